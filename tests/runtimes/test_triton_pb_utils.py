"""pb_utils's pieces that need no server: data types, BYTES serialization, errors and their
codes, response senders, auto-complete's ModelConfig, and BLS outside a model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from modelyard.runtimes import triton_pb_utils as pb_utils


def test_data_types_follow_triton() -> None:
    assert pb_utils.triton_string_to_numpy("TYPE_FP32") is np.float32
    assert pb_utils.triton_string_to_numpy("TYPE_STRING") is np.object_
    assert pb_utils.triton_to_numpy_type(11) is np.float32
    assert pb_utils.triton_to_numpy_type(13) is np.object_
    assert pb_utils.triton_to_numpy_type(99) is None
    assert pb_utils.numpy_to_triton_type(np.int64) == 9
    assert pb_utils.numpy_to_triton_type(np.bytes_) == 13
    assert pb_utils.numpy_to_triton_type(np.complex64) is None
    tensor = pb_utils.Tensor("x", np.zeros((2, 3), np.float16))
    assert (tensor.name(), tensor.shape(), tensor.triton_dtype(), tensor.is_cpu()) == (
        "x",
        [2, 3],
        10,
        True,
    )


def test_bytes_serialization_round_trips() -> None:
    items = np.array([b"a", b"", "\u00e9t\u00e9"], dtype=object)
    encoded = pb_utils.serialize_byte_tensor(items)
    assert encoded is not None
    back = pb_utils.deserialize_bytes_tensor(encoded)
    assert back.tolist() == [b"a", b"", "\u00e9t\u00e9".encode()]
    assert pb_utils.serialize_byte_tensor(np.array([], dtype=object)) == b""
    assert pb_utils.serialize_byte_tensor(np.zeros(2, np.float32)) is None


def test_errors_carry_triton_codes() -> None:
    error = pb_utils.TritonError("bad")
    assert (error.message(), error.code()) == ("bad", pb_utils.TritonError.INTERNAL)
    assert pb_utils.TritonError("x", pb_utils.TritonError.NOT_FOUND).code() == 2
    response = pb_utils.InferenceResponse(error=error, parameters={"k": 1})
    assert response.has_error() and response.error() is error
    assert json.loads(response.parameters()) == {"k": 1}
    with pytest.raises(pb_utils.TritonModelException, match="numpy array"):
        pb_utils.Tensor("x", [1, 2])


def test_a_sender_closes_at_the_final_flag() -> None:
    sent: list[tuple[object, bool]] = []
    request = pb_utils.InferenceRequest.received(
        {"x": np.zeros(1)}, ["y"], lambda r, final: sent.append((r, final)), "id-1", {"a": 1}
    )
    sender = request.get_response_sender()
    with pytest.raises(pb_utils.TritonModelException, match="needs a response"):
        sender.send()
    sender.send(pb_utils.InferenceResponse(), flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
    assert sender.closed and sent[0][1] is True
    with pytest.raises(pb_utils.TritonModelException, match="has been closed"):
        sender.send(pb_utils.InferenceResponse())
    assert request.request_id() == "id-1"
    assert json.loads(request.parameters()) == {"a": 1}
    assert pb_utils.get_input_tensor_by_name(request, "x") is not None
    assert pb_utils.get_input_tensor_by_name(request, "nope") is None
    with pytest.raises(pb_utils.TritonModelException, match="Rescheduling"):
        request.set_release_flags(pb_utils.TRITONSERVER_REQUEST_RELEASE_RESCHEDULE)


def test_model_config_for_auto_complete() -> None:
    config = pb_utils.ModelConfig(json.dumps({"name": "m", "max_batch_size": 8}))
    with pytest.raises(ValueError, match="max_batch_size 8"):
        config.set_max_batch_size(4)
    config.set_max_batch_size(16)
    config.set_dynamic_batching()
    config.add_input({"name": "x", "data_type": "TYPE_FP32", "dims": [2]})
    config.add_input({"name": "x", "data_type": "TYPE_FP32", "dims": [2]})  # the same: fine
    with pytest.raises(ValueError, match="another data_type or dims"):
        config.add_input({"name": "x", "data_type": "TYPE_INT32", "dims": [2]})
    with pytest.raises(ValueError, match="needs name, data_type"):
        config.add_output({"name": "y", "data_type": "TYPE_FP32", "shape": [2]})
    config.set_model_transaction_policy({"decoupled": True})
    data = config.as_dict()
    assert data["max_batch_size"] == 16 and "dynamic_batching" in data
    assert pb_utils.using_decoupled_model_transaction_policy(data)
    assert pb_utils.get_input_config_by_name(data, "x")["dims"] == [2]
    assert pb_utils.get_output_config_by_name(data, "y") is None


def test_bls_outside_a_model_and_the_other_refusals_say_why() -> None:
    call = pb_utils.InferenceRequest(
        model_name="m", inputs=[], requested_output_names=["y"], timeout=5
    )
    with pytest.raises(pb_utils.TritonModelException, match="BLS is not available"):
        call.exec()
    with pytest.raises(pb_utils.TritonModelException, match="only a request the model received"):
        call.get_response_sender()
    with pytest.raises(pb_utils.TritonModelException, match="is_model_ready"):
        pb_utils.is_model_ready("m")
    with pytest.raises(pb_utils.TritonModelException, match="model_repository"):
        pb_utils.get_model_dir()
    with pytest.raises(pb_utils.TritonModelException, match="DLPack"):
        pb_utils.Tensor("x", np.zeros(1)).__dlpack__()
