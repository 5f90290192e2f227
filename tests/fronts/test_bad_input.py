"""Every kind of bad request gets a 4xx that says what to fix, interleaved with good requests
that keep getting right answers; the server keeps going."""

from __future__ import annotations

import gzip
import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import numpy as np
import pytest

from tests.server_process import ServerProcess

GOOD = {
    "inputs": [
        {"name": "INPUT0", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
        {"name": "INPUT1", "shape": [1, 4], "datatype": "INT32", "data": [1, 1, 1, 1]},
    ]
}


def _with(**changes: object) -> dict[str, object]:
    body = cast(dict[str, Any], json.loads(json.dumps(GOOD)))
    body["inputs"][0].update(changes)
    return body


def _binary_body(header_length_delta: int = 0) -> tuple[bytes, dict[str, str]]:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "INPUT0",
                    "shape": [1, 4],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 16},
                },
                {"name": "INPUT1", "shape": [1, 4], "datatype": "INT32", "data": [1, 1, 1, 1]},
            ]
        }
    ).encode()
    body = header + np.arange(4, dtype=np.float32).tobytes()
    return body, {"Inference-Header-Content-Length": str(len(header) + header_length_delta)}


BAD_CASES: list[tuple[str, str, object, int, str]] = [
    # (id, url suffix, body (dict -> JSON, bytes -> raw), status, message fragment)
    ("wrong shape", "addsub/infer", _with(shape=[1, 3], data=[1, 2, 3]), 400, "expected [-1, 4]"),
    ("wrong dtype", "addsub/infer", _with(datatype="FP64"), 400, "must be FP32, got FP64"),
    (
        "missing input",
        "addsub/infer",
        {"inputs": GOOD["inputs"][:1]},
        400,
        "missing input 'INPUT1'",
    ),
    (
        "unknown input",
        "addsub/infer",
        {"inputs": [*GOOD["inputs"], {"name": "Z", "shape": [1], "datatype": "FP32", "data": [1]}]},
        400,
        "has no input 'Z'",
    ),
    (
        "unknown output",
        "addsub/infer",
        {**GOOD, "outputs": [{"name": "NOPE"}]},
        400,
        "has no output 'NOPE'",
    ),
    (
        "element count",
        "addsub/infer",
        _with(data=[1, 2, 3]),
        400,
        "needs 4 elements but data has 3",
    ),
    (
        "over max batch",
        "addsub/infer",
        _with(shape=[9, 4], data=[0.0] * 36),
        400,
        "max_batch_size 8",
    ),
    ("bad datatype name", "addsub/infer", _with(datatype="FLOAT"), 400, "unknown datatype 'FLOAT'"),
    ("bad shape value", "addsub/infer", _with(shape=[1, -4]), 400, "non-negative integers"),
    ("no inputs", "addsub/infer", {"outputs": []}, 400, "non-empty 'inputs'"),
    ("malformed json", "addsub/infer", b'{"inputs": [', 400, "malformed JSON"),
    ("json not object", "addsub/infer", b"[1, 2]", 400, "JSON object"),
    ("unknown model", "nope/infer", GOOD, 404, "unknown model 'nope'"),
    ("unknown version", "addsub/versions/9/infer", GOOD, 404, "no version 9"),
    ("text in numbers", "addsub/infer", _with(data=["a", "b", "c", "d"]), 400, "does not fit"),
    (
        "model raises",
        "broken/infer",
        {"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [-1, -2]}]},
        500,
        "negative input breaks this model",
    ),
]


def _post(
    client: httpx.Client, suffix: str, body: object, headers: dict[str, str] | None = None
) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(f"/v2/models/{suffix}", content=content, headers=headers or {})


def _assert_good(client: httpx.Client) -> None:
    response = _post(client, "addsub/versions/1/infer", GOOD)
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == [2.0, 3.0, 4.0, 5.0]


def test_bad_requests_interleaved_with_good(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for _ in range(2):
            for case_id, suffix, body, status, fragment in BAD_CASES:
                _assert_good(client)
                response = _post(client, suffix, body)
                assert response.status_code == status, (case_id, response.text)
                assert fragment in response.json()["error"], (case_id, response.text)
            _assert_good(client)


def test_binary_extension_errors(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        body, headers = _binary_body()
        ok = _post(client, "addsub/versions/1/infer", body, headers)
        assert ok.status_code == 200, ok.text
        assert ok.json()["outputs"][0]["data"] == [1.0, 2.0, 3.0, 4.0]
        body, headers = _binary_body()
        liar = {"Inference-Header-Content-Length": str(len(body) + 100)}
        response = _post(client, "addsub/infer", body, liar)
        assert response.status_code == 400 and "Inference-Header-Content-Length" in response.text
        body, headers = _binary_body(header_length_delta=-5)
        response = _post(client, "addsub/infer", body, headers)
        assert response.status_code == 400 and "malformed JSON" in response.text
        body, headers = _binary_body()
        response = _post(client, "addsub/infer", body + b"junk", headers)
        assert response.status_code == 400 and "no input claims" in response.text
        response = _post(client, "addsub/infer", body[:-3], headers)
        assert response.status_code == 400 and "runs past the end" in response.text
        response = _post(client, "addsub/infer", body, {"Inference-Header-Content-Length": "x"})
        assert response.status_code == 400 and "must be a number" in response.text
        bytes_header = json.dumps(
            {
                "inputs": [
                    {
                        "name": "TEXT",
                        "shape": [1, 1],
                        "datatype": "BYTES",
                        "parameters": {"binary_data_size": 6},
                    }
                ]
            }
        ).encode()
        truncated = bytes_header + struct.pack("<I", 10) + b"ab"
        response = _post(
            client,
            "reverse/infer",
            truncated,
            {"Inference-Header-Content-Length": str(len(bytes_header))},
        )
        assert response.status_code == 400 and "runs past the end of its data" in response.text
        _assert_good(client)


def test_compressed_request_and_response(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        content = gzip.compress(json.dumps(GOOD).encode())
        response = _post(
            client,
            "addsub/versions/1/infer",
            content,
            {"Content-Encoding": "gzip", "Accept-Encoding": "gzip"},
        )
        assert response.status_code == 200
        assert response.headers["content-encoding"] == "gzip"
        assert response.json()["outputs"][0]["data"] == [2.0, 3.0, 4.0, 5.0]
        response = _post(client, "addsub/infer", b"not gzip", {"Content-Encoding": "gzip"})
        assert response.status_code == 400 and "not valid gzip" in response.text
        response = _post(client, "addsub/infer", b"x", {"Content-Encoding": "br"})
        assert response.status_code == 400 and "Content-Encoding" in response.text


def test_oversized_body_is_refused(model_repo: Path, tmp_path: Path) -> None:
    with (
        ServerProcess(
            str(model_repo),
            "--load-model",
            "addsub",
            "--model-control-mode",
            "explicit",
            "--max-request-bytes",
            "4096",
            log_path=tmp_path / "log",
        ) as own,
        httpx.Client(base_url=own.url, timeout=10) as client,
    ):
        big = _with(shape=[8, 4], data=[1.0] * 32)
        big["padding"] = "x" * 5000
        response = _post(client, "addsub/infer", big)
        assert response.status_code == 413 and "--max-request-bytes" in response.text

        def chunks() -> Iterator[bytes]:
            for _ in range(10):
                yield b"x" * 1000

        response = client.post("/v2/models/addsub/infer", content=chunks())
        assert response.status_code == 413
        bomb = gzip.compress(b" " * 100_000)
        response = _post(client, "addsub/infer", bomb, {"Content-Encoding": "gzip"})
        assert response.status_code == 413 and "decompressed" in response.text
        _assert_good(client)


@pytest.mark.parametrize("path", ["/v2/systemsharedmemory/status", "/v2/cudasharedmemory/status"])
def test_shared_memory_is_declined_clearly(server: ServerProcess, path: str) -> None:
    response = httpx.get(server.url + path)
    assert response.status_code == 400 and "shared-memory" in response.json()["error"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/show", {"model": "../../../../**/zzz"}),
        ("POST", "/api/show", {"model": "/etc/passwd"}),
        ("POST", "/v2/repository/models/**/load", None),
        ("GET", "/v2/models/addsub/versions/%C2%B2", None),  # a Unicode digit
        ("GET", "/v2/models/addsub/versions/%C2%B2/ready", None),
    ],
)
def test_names_and_versions_that_are_not_are_4xx_at_once(
    server: ServerProcess, method: str, path: str, body: object
) -> None:
    """Names are model names, never paths or patterns: nothing is globbed or listed, so an
    answer is quick and the server is not held up."""
    reply = httpx.request(method, f"{server.url}{path}", json=body, timeout=5)
    assert 400 <= reply.status_code < 500, reply.text
    assert reply.elapsed.total_seconds() < 1


def test_delete_changes_only_the_first_repository_folder(tmp_path: Path) -> None:
    from onnx import TensorProto

    from tests import models

    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    models.identity_onnx(second / "other.onnx", TensorProto.FLOAT)
    with ServerProcess(str(first), str(second), log_path=tmp_path / "log") as own:
        reply = httpx.request("DELETE", f"{own.url}/api/delete", json={"model": "other"})
        assert reply.status_code == 400 and "first repository folder" in reply.json()["error"]
        assert (second / "other.onnx").exists()


def test_api_keys_that_are_all_blank_refuse_to_start() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "modelyard", "serve", "--api-key", " , ", "--http-port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and "no API key" in done.stderr
