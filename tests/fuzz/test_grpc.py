"""KServe v2 gRPC fuzzed: ModelInferRequest messages built from strategies (tritonclient's
stubs), other calls with odd names, raw message bytes that are not protobuf, and bytes and
frames that break HTTP/2 sent to modelyard's own HTTP/2 server (fronts/h2)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from modelyard.fronts.h2.connection import CONTINUATION, DATA, HEADERS, SETTINGS, frame
from tests.fuzz import strategies
from tests.fuzz.oracle import FUZZ, HANG_S, tally
from tests.server_process import ServerProcess

#: What a bug looks like over gRPC (a model's own failure would be INTERNAL too; none fails).
BUGS = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED}


@pytest.fixture
def channel(fuzzed: ServerProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(fuzzed.grpc_addr) as channel:
        yield channel


def _call(call: Any, message: Any) -> None:
    try:
        call(message, timeout=HANG_S)
        tally("gRPC", "OK")
    except grpc.RpcError as exc:
        tally("gRPC", exc.code().name)
        assert exc.code() not in BUGS, f"{exc.code()} {exc.details()} for {message!r}"


def _contents(datatype: str, values: list[Any]) -> dict[str, Any]:
    field = {
        "BOOL": "bool_contents",
        "INT32": "int_contents",
        "INT64": "int64_contents",
        "UINT32": "uint_contents",
        "UINT64": "uint64_contents",
        "FP32": "fp32_contents",
        "FP64": "fp64_contents",
        "BYTES": "bytes_contents",
    }.get(datatype, "int_contents")
    kind = {"bool_contents": bool, "fp32_contents": float, "fp64_contents": float}
    if field == "bytes_contents":
        return {field: [str(v).encode() for v in values]}
    if field in ("uint_contents", "uint64_contents"):
        return {field: [abs(int(v)) % 2**32 for v in values]}
    if field in ("int_contents",):
        return {field: [int(v) % 2**31 for v in values]}
    if field == "int64_contents":
        return {field: [int(v) % 2**63 for v in values]}
    return {field: [kind[field](v) for v in values]}


tensor = st.builds(
    lambda name, datatype, shape, values, use_raw, raw: (
        name,
        datatype,
        shape,
        values,
        use_raw,
        raw,
    ),
    st.sampled_from(["INPUT0", "INPUT1", "x", ""]),
    st.sampled_from(["FP32", "INT32", "INT64", "UINT64", "BOOL", "BYTES", "FP16", "FP8", ""]),
    st.lists(st.integers(-2, 2**40), max_size=3),
    st.lists(st.integers(-3, 3), max_size=8),
    st.booleans(),
    st.binary(max_size=40),
)


@st.composite
def addsub_requests(draw: st.DrawFn) -> pb.ModelInferRequest:
    """A right request for addsub (raw contents), then maybe one part of it broken."""
    n = draw(st.integers(1, 3))
    request = pb.ModelInferRequest(model_name="addsub")
    for name, datatype, dtype in (("INPUT0", "FP32", np.float32), ("INPUT1", "INT32", np.int32)):
        request.inputs.add(name=name, datatype=datatype, shape=[n, 4])
        request.raw_input_contents.append(np.arange(4 * n, dtype=dtype).tobytes())
    broken = draw(st.sampled_from(["", "name", "datatype", "shape", "raw", "extra"]))
    item = request.inputs[draw(st.integers(0, 1))]
    if broken == "name":
        item.name = draw(st.text(max_size=6))
    elif broken == "datatype":
        item.datatype = draw(st.sampled_from(["FP64", "BYTES", "BOOL", "", "INT8"]))
    elif broken == "shape":
        del item.shape[:]
        item.shape.extend(draw(st.lists(st.integers(-2, 2**40), max_size=3)))
    elif broken == "raw":
        request.raw_input_contents[0] = draw(st.binary(max_size=64))
    elif broken == "extra":
        request.raw_input_contents.append(draw(st.binary(max_size=8)))
    return request


@st.composite
def infer_requests(draw: st.DrawFn) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(
        model_name=draw(strategies.names),
        model_version=draw(st.sampled_from(["", "1", "9", "x", "\u00b2"])),
    )
    for name, datatype, shape, values, use_raw, raw in draw(st.lists(tensor, max_size=3)):
        item = request.inputs.add(name=name, datatype=datatype, shape=shape)
        if use_raw:
            request.raw_input_contents.append(raw)
        else:
            for key, value in _contents(datatype, values).items():
                getattr(item.contents, key).extend(value)
    for name in draw(st.lists(st.sampled_from(["OUTPUT0", "OUTPUT1", "x"]), max_size=2)):
        request.outputs.add(name=name)
    if draw(st.booleans()):
        request.parameters["binary_data_output"].bool_param = True
    return request


@FUZZ
@given(request=addsub_requests() | infer_requests())
def test_infer_messages(channel: grpc.Channel, request: pb.ModelInferRequest) -> None:
    _call(pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer, request)


@FUZZ
@given(
    name=strategies.names, version=st.sampled_from(["", "1", "x", "\u00b2", "99999999999999999999"])
)
def test_model_calls(channel: grpc.Channel, name: str, version: str) -> None:
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    _call(stub.ModelMetadata, pb.ModelMetadataRequest(name=name, version=version))
    _call(stub.ModelReady, pb.ModelReadyRequest(name=name, version=version))
    _call(stub.ModelConfig, pb.ModelConfigRequest(name=name, version=version))
    _call(stub.ModelStatistics, pb.ModelStatisticsRequest(name=name, version=version))


@FUZZ
@given(raw=st.binary(max_size=200))
def test_message_bytes_that_are_not_protobuf(channel: grpc.Channel, raw: bytes) -> None:
    call = channel.unary_unary(
        "/inference.GRPCInferenceService/ModelInfer",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    _call(call, raw)


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(SETTINGS, 0, 0)
frames = st.lists(
    st.builds(
        frame,
        st.sampled_from([DATA, HEADERS, CONTINUATION, SETTINGS, 2, 3, 6, 7, 8, 0x10]),
        st.integers(0, 255),
        st.integers(0, 9),
        st.binary(max_size=30),
    ),
    max_size=5,
)


@FUZZ
@given(
    preface=st.sampled_from([PREFACE, b"", b"PRI * HTTP/2.0\r\n"]),
    sent=frames,
    tail=st.binary(max_size=30),
)
def test_frames_that_break_http2(
    fuzzed: ServerProcess, preface: bytes, sent: list[bytes], tail: bytes
) -> None:
    """The server answers or closes within the hang limit, whatever arrives."""
    with socket.create_connection(("127.0.0.1", fuzzed.grpc_port), timeout=HANG_S) as sock:
        sock.sendall(preface + b"".join(sent) + tail)
        sock.shutdown(socket.SHUT_WR)
        start = time.monotonic()
        while sock.recv(65536):
            assert time.monotonic() - start < HANG_S
    tally("HTTP/2 frames", "closed")
