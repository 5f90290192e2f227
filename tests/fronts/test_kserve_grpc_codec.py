"""The gRPC codec on its own: hand-written raw output fields parse as protobuf's own, typed
contents decode to the right dtypes."""

from __future__ import annotations

import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as pb

from modelyard.core.types import InferResponse
from modelyard.errors import InvalidArgument
from modelyard.fronts.kserve_grpc_codec import (
    decode_request,
    encode_response,
    final_response,
    stream_response,
)


def _response() -> InferResponse:
    outputs = {
        "small": np.arange(3, dtype=np.int32),
        "large": np.random.default_rng(0).random((70, 300)).astype(np.float32),  # 84 000 bytes
        "text": np.array([b"a", b"bc"], dtype=object),
        "empty": np.zeros((0, 4), dtype=np.float64),
    }
    return InferResponse("m", "3", outputs, id="req-1", parameters={"seq": 7, "note": "x"})


def test_raw_response_parses_as_protobuf() -> None:
    response = _response()
    parsed = pb.ModelInferResponse.FromString(encode_response(response).SerializeToString())
    assert (parsed.model_name, parsed.model_version, parsed.id) == ("m", "3", "req-1")
    assert [o.name for o in parsed.outputs] == list(response.outputs)
    assert list(parsed.outputs[1].shape) == [70, 300]
    assert parsed.raw_output_contents[1] == response.outputs["large"].tobytes()
    assert parsed.raw_output_contents[2] == b"\x01\0\0\0a\x02\0\0\0bc"
    assert parsed.raw_output_contents[3] == b""
    assert parsed.parameters["seq"].int64_param == 7
    assert parsed.parameters["note"].string_param == "x"


def test_stream_wrapping_and_final_flag() -> None:
    wrapped = stream_response(encode_response(_response()), final=False).SerializeToString()
    parsed = pb.ModelStreamInferResponse.FromString(wrapped)
    assert parsed.error_message == ""
    assert parsed.infer_response.id == "req-1"
    assert parsed.infer_response.parameters["triton_final_response"].bool_param is False
    assert len(parsed.infer_response.raw_output_contents) == 4
    request = decode_request(_typed_request())
    final = pb.ModelStreamInferResponse.FromString(final_response(request, "1").SerializeToString())
    assert final.infer_response.parameters["triton_final_response"].bool_param is True
    assert not final.infer_response.outputs


def _typed_request() -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="m", id="t")
    request.inputs.add(name="u16", datatype="UINT16", shape=[2]).contents.uint_contents[:] = [1, 2]
    request.inputs.add(name="b", datatype="BOOL", shape=[1, 2]).contents.bool_contents[:] = [
        True,
        False,
    ]
    request.inputs.add(name="f64", datatype="FP64", shape=[1]).contents.fp64_contents[:] = [0.5]
    request.inputs.add(name="s", datatype="BYTES", shape=[1]).contents.bytes_contents[:] = [b"hi"]
    request.outputs.add(name="out").parameters["classification"].int64_param = 2
    request.parameters["priority"].int64_param = 1
    return request


def test_typed_contents_decode_to_their_dtypes() -> None:
    request = decode_request(_typed_request())
    assert request.inputs["u16"].dtype == np.uint16
    assert request.inputs["b"].tolist() == [[True, False]]
    assert request.inputs["f64"].dtype == np.float64
    assert request.inputs["s"].tolist() == [b"hi"]
    assert request.outputs is not None and request.outputs[0].parameters == {"classification": 2}
    assert request.parameters == {"priority": 1}
    assert request.id == "t" and request.version is None


@pytest.mark.parametrize(
    ("datatype", "fragment"),
    [("FLOAT", "unknown datatype 'FLOAT'"), ("BF16", "no typed contents")],
)
def test_typed_contents_refusals(datatype: str, fragment: str) -> None:
    request = pb.ModelInferRequest(model_name="m")
    request.inputs.add(name="x", datatype=datatype, shape=[1])
    with pytest.raises(InvalidArgument, match=fragment):
        decode_request(request)


def test_no_inputs_and_duplicates() -> None:
    with pytest.raises(InvalidArgument, match="no inputs"):
        decode_request(pb.ModelInferRequest(model_name="m"))
    request = pb.ModelInferRequest(model_name="m")
    for _ in range(2):
        request.inputs.add(name="x", datatype="INT64", shape=[1]).contents.int64_contents[:] = [1]
    with pytest.raises(InvalidArgument, match="given twice"):
        decode_request(request)
