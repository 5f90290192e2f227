"""What one client may hold, on the real server with its limits shrunk: huge or countless
header fields, slow senders, idle and surplus connections, big bodies past the memory
budget; on the HTTP and the gRPC port. None of it may stall the server or a good request."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests.server_process import ServerProcess

pytestmark = pytest.mark.slow

MAX_REQUEST = 2 * 1024 * 1024
BUDGET = 4 * 1024 * 1024
CAP = 40
IDLE_S = 1.0


SLOW_YAML = """\
runtime: python
inputs: [{name: X, datatype: FP32, shape: [-1]}]
outputs: [{name: Y, datatype: FP32, shape: [-1]}, {name: SEQ, datatype: INT64, shape: [-1]}]
parameters: {delay: "1.0"}
"""


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    from onnx import TensorProto

    from tests.models import SLOW_MODEL, identity_onnx

    root = tmp_path_factory.mktemp("limits")
    identity_onnx(root / "repo" / "identity_fp32.onnx", TensorProto.FLOAT)
    (root / "repo" / "slow").mkdir()
    (root / "repo" / "slow" / "model.py").write_text(SLOW_MODEL)
    (root / "repo" / "slow" / "model.yaml").write_text(SLOW_YAML)
    with ServerProcess(
        str(root / "repo"),
        *("--max-header-bytes", "8192", "--max-headers", "30"),
        *("--header-timeout", "1", "--body-timeout", "2"),
        *("--idle-timeout", str(IDLE_S), "--grpc-idle-timeout", str(IDLE_S)),
        *("--max-connections", str(CAP), "--max-body-memory", "4MiB"),
        *("--max-request-bytes", str(MAX_REQUEST), "--grpc-max-message-bytes", str(MAX_REQUEST)),
        log_path=root / "server.log",
    ) as process:
        yield process


def _good(server: ServerProcess) -> None:
    """A normal client is served, quickly."""
    body = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}
    began = time.monotonic()
    reply = httpx.post(f"{server.url}/v2/models/identity_fp32/infer", json=body, timeout=5)
    assert reply.status_code == 200, reply.text
    assert time.monotonic() - began < 2


def _exchange(server: ServerProcess, data: bytes) -> bytes:
    """Send raw bytes (as far as the server reads them), then read until it closes."""
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        return _read_all(sock)


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def _rss_kib(server: ServerProcess) -> int:
    assert server.process is not None
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1])


def _status(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else 0


# ---- header fields ----------------------------------------------------------------------------


def test_huge_headers_get_431_and_memory_stays_flat(limited: ServerProcess) -> None:
    before = _rss_kib(limited)
    request = b"GET /v2 HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (4 << 20) + b"\r\n\r\n"
    replies: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: replies.append(_exchange(limited, request)))
        for _ in range(16)
    ]
    for thread in threads:
        thread.start()
    _good(limited)
    for thread in threads:
        thread.join(20)
    assert len(replies) == 16 and all(_status(r) in (431, 0) for r in replies)
    assert any(b"--max-header-bytes" in r for r in replies)
    assert _rss_kib(limited) - before < 64 * 1024  # 16 x 4 MiB were never held
    _good(limited)


def test_too_many_header_fields_get_431(limited: ServerProcess) -> None:
    fields = b"".join(b"X-%d: 1\r\n" % i for i in range(1000))
    reply = _exchange(limited, b"GET /v2 HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")
    assert _status(reply) == 431 and b"--max-headers" in reply
    reply = _exchange(limited, b"GET /v2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert _status(reply) == 200  # a few fields are fine


def test_headers_under_the_limit_may_come_in_pieces(limited: ServerProcess) -> None:
    fields = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 200) for i in range(25))  # about 5.4 KiB
    request = b"GET /v2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + fields + b"\r\n"
    with socket.create_connection(("127.0.0.1", limited.http_port), timeout=10) as sock:
        for start in range(0, len(request), 1000):
            sock.sendall(request[start : start + 1000])
            time.sleep(0.05)
        assert _status(_read_all(sock)) == 200


# ---- slow and idle clients -------------------------------------------------------------------


def test_slowloris_is_cut_off_while_good_requests_go_on(limited: ServerProcess) -> None:
    def slow_headers() -> bytes:
        with socket.create_connection(("127.0.0.1", limited.http_port), timeout=10) as sock:
            try:
                for byte in b"GET /v2 HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
                    sock.sendall(bytes([byte]))
                    time.sleep(0.1)
            except OSError:
                pass
            return _read_all(sock)

    def slow_body() -> bytes:
        head = b"POST /v2/models/identity_fp32/infer HTTP/1.1\r\nContent-Length: 1000\r\n\r\n"
        with socket.create_connection(("127.0.0.1", limited.http_port), timeout=10) as sock:
            sock.sendall(head + b"{")
            return _read_all(sock)

    replies: list[bytes] = []
    began = time.monotonic()
    threads = [
        threading.Thread(target=lambda f=f: replies.append(f()))
        for f in [slow_headers] * 10 + [slow_body] * 10
    ]
    for thread in threads:
        thread.start()
    _good(limited)
    for thread in threads:
        thread.join(10)
    assert sorted(_status(r) for r in replies) == [408] * 20
    assert sum(b"request headers took" in r for r in replies) == 10
    assert time.monotonic() - began < 5  # header deadline 1 s, body 2 s, swept twice a second
    _good(limited)


def test_idle_and_surplus_connections_never_lock_a_client_out(limited: ServerProcess) -> None:
    socks = [socket.create_connection(("127.0.0.1", limited.http_port)) for _ in range(CAP + 20)]
    try:
        time.sleep(0.2)
        # past the cap: 503 at once, not a hang
        reply = httpx.get(f"{limited.url}/v2/health/ready", timeout=5)
        assert reply.status_code == 503 and reply.headers["retry-after"] == "1"
        assert "too many connections" in reply.json()["error"]
        time.sleep(IDLE_S + 1)  # the idle ones are closed
        replies = [_read_all(sock) for sock in socks]
        assert {_status(r) for r in replies} == {0, 503}  # closed when idle, or refused
        assert sum(r == b"" for r in replies) <= CAP
        _good(limited)
    finally:
        for sock in socks:
            sock.close()


def test_idle_connection_is_closed(limited: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", limited.http_port), timeout=10) as sock:
        began = time.monotonic()
        assert _read_all(sock) == b""
        assert IDLE_S <= time.monotonic() - began + 0.05 < IDLE_S + 2


# ---- bodies in flight ------------------------------------------------------------------------


def _big_body(values: int) -> bytes:
    tensor = {"name": "x", "shape": [1, values], "datatype": "FP32", "data": [1.5] * values}
    return orjson.dumps({"inputs": [tensor]})


def test_bodies_past_the_budget_get_429_and_free_it_after(limited: ServerProcess) -> None:
    """Two stalled 1.5 MiB uploads hold 3 of the 4 MiB: a third body is refused at once
    (429, logged); when the stalled ones time out the budget is free again."""
    size = 1536 * 1024
    head = b"POST /v2/models/identity_fp32/infer HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % size
    stalled = [socket.create_connection(("127.0.0.1", limited.http_port)) for _ in range(2)]
    try:
        for sock in stalled:
            sock.sendall(head + b"{" * 1024)
        time.sleep(0.3)
        body = _big_body(size // 4)
        reply = httpx.post(f"{limited.url}/v2/models/identity_fp32/infer", content=body)
        assert reply.status_code == 429, reply.text
        assert "--max-body-memory" in reply.json()["error"]
        assert reply.headers["retry-after"] == "1"
        _good(limited)  # small bodies still fit
        for sock in stalled:
            assert _status(_read_all(sock)) == 408
        reply = httpx.post(f"{limited.url}/v2/models/identity_fp32/infer", content=body)
        assert reply.status_code == 200, reply.text
    finally:
        for sock in stalled:
            sock.close()
    assert "(--max-body-memory)" in limited.log()


def test_concurrent_big_bodies_stay_within_the_budget(limited: ServerProcess) -> None:
    before = _rss_kib(limited)
    body = _big_body(400_000)  # 1.6 MB of JSON
    statuses: list[int] = []
    start = threading.Barrier(24)

    def send() -> None:
        with httpx.Client(timeout=30) as client:
            start.wait()
            url = f"{limited.url}/v2/models/identity_fp32/infer"
            statuses.append(client.post(url, content=body).status_code)

    threads = [threading.Thread(target=send) for _ in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(statuses) == 24 and set(statuses) <= {200, 429} and 200 in statuses
    assert _rss_kib(limited) - before < 256 * 1024
    _good(limited)


# ---- the gRPC port ---------------------------------------------------------------------------

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def _frames(sock: socket.socket) -> list[int]:
    """The types of the frames the server sends until it closes."""
    data, kinds = _read_all(sock), []
    while len(data) >= 9:
        length = int.from_bytes(data[:3], "big")
        kinds.append(data[3])
        data = data[9 + length :]
    return kinds


def test_grpc_idle_and_silent_connections_are_closed(limited: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", limited.grpc_port), timeout=10) as idle:
        idle.sendall(PREFACE + struct.pack(">HBBBI", 0, 0, 4, 0, 0))
        began = time.monotonic()
        assert 7 in _frames(idle)  # GOAWAY
        assert time.monotonic() - began < IDLE_S + 2
    with socket.create_connection(("127.0.0.1", limited.grpc_port), timeout=10) as silent:
        began = time.monotonic()
        _frames(silent)
        assert time.monotonic() - began < 1 + 2  # --header-timeout


def test_grpc_requests_past_the_budget_are_refused(limited: ServerProcess) -> None:
    """Two 1.5 MiB calls on a model that takes a second hold 3 of the 4 MiB: a third is
    RESOURCE_EXHAUSTED at once; once they end, the budget is free again."""
    values = np.ones(384 * 1024, np.float32)
    x = grpcclient.InferInput("X", [values.size], "FP32")
    x.set_data_from_numpy(values)
    y = [grpcclient.InferRequestedOutput("Y")]
    client = grpcclient.InferenceServerClient(limited.grpc_addr)
    answers: list[int] = []

    def hold() -> None:
        answers.append(client.infer("slow", [x], outputs=y).as_numpy("Y").size)

    holders = [threading.Thread(target=hold) for _ in range(2)]
    for thread in holders:
        thread.start()
    time.sleep(0.4)
    with pytest.raises(InferenceServerException, match="max-body-memory"):
        client.infer("slow", [x], outputs=y)
    for thread in holders:
        thread.join(10)
    assert answers == [values.size] * 2
    assert client.infer("slow", [x], outputs=y).as_numpy("Y").size == values.size


def test_grpc_too_many_metadata_fields_fail_that_call_only(limited: ServerProcess) -> None:
    client = grpcclient.InferenceServerClient(limited.grpc_addr)
    x = grpcclient.InferInput("x", [1, 2], "FP32")
    x.set_data_from_numpy(np.ones((1, 2), np.float32))
    headers = {f"x-field-{i}": "1" for i in range(60)}
    with pytest.raises(InferenceServerException):
        client.infer("identity_fp32", [x], headers=headers)
    result = client.infer("identity_fp32", [x])
    np.testing.assert_array_equal(result.as_numpy("y"), np.ones((1, 2), np.float32))


def test_grpc_connections_past_the_cap_get_goaway(limited: ServerProcess) -> None:
    socks = [socket.create_connection(("127.0.0.1", limited.http_port)) for _ in range(CAP)]
    try:
        time.sleep(0.2)
        with socket.create_connection(("127.0.0.1", limited.grpc_port), timeout=5) as extra:
            extra.sendall(PREFACE)
            assert _frames(extra) == [4, 7]  # SETTINGS, GOAWAY
    finally:
        for sock in socks:
            sock.close()
    time.sleep(0.2)
    client = grpcclient.InferenceServerClient(limited.grpc_addr)
    assert client.is_server_ready()


# ---- start-up ----------------------------------------------------------------------------------


def test_the_open_files_limit_is_raised_to_its_hard_limit(limited: ServerProcess) -> None:
    assert limited.process is not None
    limits = Path(f"/proc/{limited.process.pid}/limits").read_text().splitlines()
    soft, hard = next(line for line in limits if line.startswith("Max open files")).split()[3:5]
    assert soft == hard


def test_a_body_budget_smaller_than_one_request_refuses_to_start(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from modelyard.cli import main

    result = CliRunner().invoke(main, ["serve", str(tmp_path), "--max-body-memory", "1MiB"])
    assert result.exit_code == 2
    assert "--max-body-memory" in result.output and "could never be taken" in result.output
