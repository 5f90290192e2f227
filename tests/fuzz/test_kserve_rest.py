"""KServe v2 REST fuzzed: JSON bodies, and binary tensors after the JSON with
Inference-Header-Content-Length (right, wrong, or not a number)."""

from __future__ import annotations

import json
from typing import Any

import httpx
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz import strategies
from tests.fuzz.oracle import FUZZ, check_answer
from tests.server_process import ServerProcess

FRONT = "KServe REST"
paths = st.sampled_from(
    [
        "/v2/models/addsub/infer",
        "/v2/models/addsub/versions/1/infer",
        "/v2/models/addsub/versions/%C2%B2/infer",
        "/v2/models/identity_string/infer",
        "/v2/models/nope/infer",
        "/v2/models/**/infer",
    ]
)


@FUZZ
@given(path=paths, document=strategies.infer_body)
def test_json_bodies(fuzzed: ServerProcess, path: str, document: Any) -> None:
    reply = httpx.post(fuzzed.url + path, content=json.dumps(document).encode(), timeout=10)
    check_answer(reply, document, FRONT)


@FUZZ
@given(
    path=paths,
    document=strategies.infer_body,
    blob=st.binary(max_size=64),
    header=st.one_of(
        st.none(),
        st.integers(-5, 400).map(str),
        st.sampled_from(["", "x", "+12", "1_2", "0x10", "\u00b2", "\u0661\u0662"]),
    ),
)
def test_binary_bodies(
    fuzzed: ServerProcess, path: str, document: Any, blob: bytes, header: str | None
) -> None:
    head = json.dumps(document).encode()
    length = str(len(head)) if header is None else header
    reply = httpx.post(
        fuzzed.url + path,
        content=head + blob,
        headers=[(b"inference-header-content-length", length.encode())],
        timeout=10,
    )
    check_answer(reply, (document, blob, length), FRONT)


@FUZZ
@given(raw=st.binary(max_size=200), encoding=st.sampled_from([None, "gzip", "deflate", "br"]))
def test_bytes_that_are_not_json(fuzzed: ServerProcess, raw: bytes, encoding: str | None) -> None:
    headers = {"Content-Encoding": encoding} if encoding else {}
    reply = httpx.post(
        f"{fuzzed.url}/v2/models/addsub/infer", content=raw, headers=headers, timeout=10
    )
    check_answer(reply, raw, FRONT)
