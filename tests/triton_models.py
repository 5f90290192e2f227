"""A model repository written the way Triton's Python-backend docs write one (config.pbtxt +
1/model.py importing triton_python_backend_utils), for the tests of the Triton Python
runtime, BLS, decoupled models and the generate extension."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests import models

PREPROCESS = """
import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.model_config = json.loads(args["model_config"])
        output_config = pb_utils.get_output_config_by_name(self.model_config, "OUTPUT0")
        self.output_dtype = pb_utils.triton_string_to_numpy(output_config["data_type"])
        self.batches = []
        pb_utils.Logger.log_info(f"initialized {args['model_name']} v{args['model_version']}")

    def execute(self, requests):
        self.batches.append(len(requests))
        responses = []
        for request in requests:
            in_0 = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            if (in_0 < 0).any():
                error = pb_utils.TritonError(
                    "INPUT0 must not be negative", pb_utils.TritonError.INVALID_ARG
                )
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
                continue
            out_0 = pb_utils.Tensor("OUTPUT0", (in_0 * 2).astype(self.output_dtype))
            batches = pb_utils.Tensor("BATCHES", np.array([[max(self.batches)]], np.int32))
            responses.append(pb_utils.InferenceResponse(output_tensors=[out_0, batches]))
        return responses

    def finalize(self):
        pb_utils.Logger.log_info("finalized")
"""

PREPROCESS_CONFIG = """
name: "preprocess"
backend: "python"
max_batch_size: 8
input [{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] }]
output [
  { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "BATCHES" data_type: TYPE_INT32 dims: [ 1 ] }
]
dynamic_batching { max_queue_delay_microseconds: 20000 }
instance_group [{ kind: KIND_CPU }]
"""

# BLS: preprocess (Python) then addsub (ONNX); async execute with async_exec.
BLS = """
import asyncio

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    async def execute(self, requests):
        return [await self.one(request) for request in requests]

    async def one(self, request):
        in_0 = pb_utils.get_input_tensor_by_name(request, "INPUT0")
        pre = pb_utils.InferenceRequest(
            model_name="preprocess",
            requested_output_names=["OUTPUT0"],
            inputs=[pb_utils.Tensor("INPUT0", in_0.as_numpy())],
        )
        pre_response = await pre.async_exec()
        if pre_response.has_error():
            return pb_utils.InferenceResponse(error=pre_response.error())
        doubled = pb_utils.get_output_tensor_by_name(pre_response, "OUTPUT0").as_numpy()
        ones = np.ones(doubled.shape, np.int32)
        calls = [
            pb_utils.InferenceRequest(
                model_name=b"addsub",  # bytes, as a BYTES tensor's element gives a name
                requested_output_names=["OUTPUT0", "OUTPUT1"],
                inputs=[pb_utils.Tensor("INPUT0", doubled), pb_utils.Tensor("INPUT1", ones)],
            ).async_exec(),
            pb_utils.InferenceRequest(
                model_name="no_such_model",
                requested_output_names=["OUTPUT0"],
                inputs=[pb_utils.Tensor("INPUT0", doubled)],
            ).async_exec(),
        ]
        addsub, missing = await asyncio.gather(*calls)
        if addsub.has_error():
            raise pb_utils.TritonModelException(addsub.error().message())
        out = pb_utils.get_output_tensor_by_name(addsub, "OUTPUT0").as_numpy()
        message = missing.error().message() if missing.has_error() else "no error"
        return pb_utils.InferenceResponse(
            output_tensors=[
                pb_utils.Tensor("OUTPUT0", out),
                pb_utils.Tensor("MISSING", np.array([[message.encode()]], dtype=object)),
            ]
        )
"""

BLS_CONFIG = """
name: "bls"
backend: "python"
max_batch_size: 8
input [{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] }]
output [
  { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "MISSING" data_type: TYPE_STRING dims: [ 1 ] }
]
"""

# A decoupled model: one response per element of IN, sent from a thread, then FINAL.
REPEAT = """
import threading
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.model_config = json_config = __import__("json").loads(args["model_config"])
        if not pb_utils.using_decoupled_model_transaction_policy(json_config):
            raise pb_utils.TritonModelException("repeat must be decoupled")

    def execute(self, requests):
        for request in requests:
            values = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            sender = request.get_response_sender()
            threading.Thread(target=self.send, args=(values, sender)).start()
        return None

    def send(self, values, sender):
        for i, value in enumerate(values):
            if value < 0:
                error = pb_utils.TritonError(f"element {i} is negative")
                sender.send(pb_utils.InferenceResponse(error=error))
                break
            out = pb_utils.Tensor("OUT", np.array([value], np.int32))
            index = pb_utils.Tensor("IDX", np.array([i], np.int32))
            sender.send(pb_utils.InferenceResponse(output_tensors=[out, index]))
            time.sleep(0.01)
        sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
"""

REPEAT_CONFIG = """
name: "repeat"
backend: "python"
max_batch_size: 0
model_transaction_policy { decoupled: true }
input [{ name: "IN" data_type: TYPE_INT32 dims: [ -1 ] }]
output [
  { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] },
  { name: "IDX" data_type: TYPE_INT32 dims: [ 1 ] }
]
"""

# A decoupled model calling a decoupled model (BLS exec(decoupled=True)), answering once.
SUM_REPEAT = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            values = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            call = pb_utils.InferenceRequest(
                model_name="repeat", requested_output_names=["OUT"],
                inputs=[pb_utils.Tensor("IN", values)],
            )
            total = 0
            count = 0
            for response in call.exec(decoupled=True):
                count += 1
                if response.has_error():
                    raise pb_utils.TritonModelException(response.error().message())
                if len(response.output_tensors()) > 0:  # the last one is empty, as in Triton
                    total += int(
                        pb_utils.get_output_tensor_by_name(response, "OUT").as_numpy()[0])
            single = pb_utils.InferenceRequest(
                model_name="repeat", requested_output_names=["OUT"],
                inputs=[pb_utils.Tensor("IN", values)],
            ).exec()
            note = single.error().message() if single.has_error() else "answered"
            assert count == len(values) + 1, count
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("SUM", np.array([total], np.int64)),
                pb_utils.Tensor("NOTE", np.array([note.encode()], dtype=object)),
            ]))
        return responses
"""

SUM_REPEAT_CONFIG = """
backend: "python"
input [{ name: "IN" data_type: TYPE_INT32 dims: [ -1 ] }]
output [
  { name: "SUM" data_type: TYPE_INT64 dims: [ 1 ] },
  { name: "NOTE" data_type: TYPE_STRING dims: [ 1 ] }
]
"""

# execute raises: every request of the batch fails with the model's message.
RAISES = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        raise ValueError("the tokenizer is missing")
"""

RAISES_CONFIG = """
backend: "python"
input [{ name: "IN" data_type: TYPE_INT32 dims: [ 1 ] }]
output [{ name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] }]
"""

# What modelyard refuses: calls the pb_utils part named in WHAT and answers its error text.
REFUSED = """
import numpy as np
import triton_python_backend_utils as pb_utils

TRIES = {
    "to_dlpack": lambda t: t.to_dlpack(),
    "from_dlpack": lambda t: pb_utils.Tensor.from_dlpack("x", None),
    "load_model": lambda t: pb_utils.load_model("other"),
    "unload_model": lambda t: pb_utils.unload_model("other"),
    "metrics": lambda t: pb_utils.MetricFamily("m", "d", pb_utils.MetricFamily.COUNTER),
    "gpu_memory": lambda t: pb_utils.InferenceRequest(
        model_name="x", inputs=[], requested_output_names=[],
        preferred_memory=pb_utils.PreferredMemory(pb_utils.TRITONSERVER_MEMORY_GPU, 0),
    ),
}


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            what = pb_utils.get_input_tensor_by_name(request, "WHAT").as_numpy()[0].decode()
            try:
                TRIES[what](pb_utils.Tensor("x", np.zeros(1, np.float32)))
                text = "accepted"
            except pb_utils.TritonModelException as exc:
                text = str(exc)
            out = pb_utils.Tensor("ERROR", np.array([text], dtype=np.bytes_))
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        return responses
"""

REFUSED_CONFIG = """
backend: "python"
input [{ name: "WHAT" data_type: TYPE_STRING dims: [ 1 ] }]
output [{ name: "ERROR" data_type: TYPE_STRING dims: [ 1 ] }]
"""

# BLS to three models: preprocess (Python), addsub (ONNX) and a text generator (its KServe
# tensors: text_input in, text_output out, as Triton's vLLM backend has them).
BLS_LLM = """
import json

import numpy as np
import triton_python_backend_utils as pb_utils


def call(model, inputs, outputs):
    response = pb_utils.InferenceRequest(
        model_name=model, requested_output_names=outputs, inputs=inputs
    ).exec()
    if response.has_error():
        raise pb_utils.TritonModelException(f"{model}: {response.error().message()}")
    return [pb_utils.get_output_tensor_by_name(response, name).as_numpy() for name in outputs]


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            prompt = pb_utils.get_input_tensor_by_name(request, "PROMPT").as_numpy()
            numbers = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            (doubled,) = call("preprocess", [pb_utils.Tensor("INPUT0", numbers)], ["OUTPUT0"])
            ones = np.ones(doubled.shape, np.int32)
            (summed,) = call(
                "addsub",
                [pb_utils.Tensor("INPUT0", doubled), pb_utils.Tensor("INPUT1", ones)],
                ["OUTPUT0"],
            )
            sampling = json.dumps({"max_tokens": 4, "temperature": 0})  # a str: numpy U
            (text,) = call(
                "tiny",
                [
                    pb_utils.Tensor("text_input", prompt.reshape(1)),
                    pb_utils.Tensor("sampling_parameters", np.array([sampling])),
                ],
                ["text_output"],
            )
            upper = np.array([[text.reshape(-1)[0].upper()]], dtype=object)
            responses.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor("TEXT", upper), pb_utils.Tensor("OUTPUT0", summed)]
            ))
        return responses
"""

BLS_LLM_CONFIG = """
backend: "python"
max_batch_size: 4
input [
  { name: "PROMPT" data_type: TYPE_STRING dims: [ 1 ] },
  { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] }
]
output [
  { name: "TEXT" data_type: TYPE_STRING dims: [ 1 ] },
  { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] }
]
"""

# Two instances: two model objects, each with its own name, executing at once.
INSTANCES = """
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.name = args["model_instance_name"]
        self.folder = args["model_repository"]
        self.busy = False

    def finalize(self):
        with open(f"{self.folder}/finalized.txt", "a") as out:
            out.write(self.name + "\\n")

    def execute(self, requests):
        assert not self.busy, "one execute at a time per instance"
        self.busy = True
        time.sleep(0.6)
        self.busy = False
        name = np.array([self.name.encode()], dtype=object)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("NAME", name)]) for _ in requests]
"""

INSTANCES_CONFIG = """
backend: "python"
input [{ name: "IN" data_type: TYPE_INT32 dims: [ 1 ] }]
output [{ name: "NAME" data_type: TYPE_STRING dims: [ 1 ] }]
instance_group [{ count: 2 kind: KIND_CPU }]
"""

# No config.pbtxt: the model declares its tensors and batch size (auto_complete_config).
AUTOCOMPLETE = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    @staticmethod
    def auto_complete_config(auto_complete_model_config):
        auto_complete_model_config.add_input({"name": "X", "data_type": "TYPE_FP32", "dims": [2]})
        auto_complete_model_config.add_output({"name": "Y", "data_type": "TYPE_FP32", "dims": [2]})
        auto_complete_model_config.set_max_batch_size(4)
        return auto_complete_model_config

    def execute(self, requests):
        return [
            pb_utils.InferenceResponse([pb_utils.Tensor(
                "Y", pb_utils.get_input_tensor_by_name(r, "X").as_numpy() + 1)])
            for r in requests
        ]
"""

# A decoupled model with an async execute (Triton's async decoupled pattern).
COUNTDOWN = """
import asyncio

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    async def execute(self, requests):
        for request in requests:
            start = int(pb_utils.get_input_tensor_by_name(request, "FROM").as_numpy()[0])
            sender = request.get_response_sender()
            for value in range(start, 0, -1):
                await asyncio.sleep(0.005)
                sender.send(pb_utils.InferenceResponse([
                    pb_utils.Tensor("VALUE", np.array([value], np.int32))]))
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
"""

COUNTDOWN_CONFIG = """
backend: "python"
model_transaction_policy { decoupled: true }
input [{ name: "FROM" data_type: TYPE_INT32 dims: [ 1 ] }]
output [{ name: "VALUE" data_type: TYPE_INT32 dims: [ 1 ] }]
"""

# What execute sees of a request: its id, parameters (a JSON string) and requested outputs.
ECHO_REQUEST = """
import numpy as np
import triton_python_backend_utils as pb_utils


def text(name, value):
    return pb_utils.Tensor(name, np.array([value.encode()], dtype=object))


class TritonPythonModel:
    def execute(self, requests):
        return [
            pb_utils.InferenceResponse(
                [
                    text("ID", request.request_id()),
                    text("PARAMS", request.parameters()),
                    text("NAMES", ",".join(request.requested_output_names())),
                ],
                parameters={"inputs_seen": len(request.inputs()), "echo": True},
            )
            for request in requests
        ]
"""

ECHO_REQUEST_CONFIG = """
backend: "python"
input [{ name: "IN" data_type: TYPE_INT32 dims: [ 1 ] }]
output [
  { name: "ID" data_type: TYPE_STRING dims: [ 1 ] },
  { name: "PARAMS" data_type: TYPE_STRING dims: [ 1 ] },
  { name: "NAMES" data_type: TYPE_STRING dims: [ 1 ] }
]
"""

# Execute returning what Triton refuses, chosen by MODE; 4 answers through the sender.
WRONG = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        mode = int(pb_utils.get_input_tensor_by_name(requests[0], "MODE").as_numpy()[0])
        if mode == 0:
            return {"not": "a list"}
        if mode == 1:
            return []
        if mode == 2:
            return ["not a response"]
        if mode == 3:
            return None  # and sends nothing
        for request in requests:
            out = pb_utils.Tensor("OUT", np.array([7], np.int32))
            request.get_response_sender().send(
                pb_utils.InferenceResponse([out]),
                flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL,
            )
        return None
"""

WRONG_CONFIG = """
backend: "python"
input [{ name: "MODE" data_type: TYPE_INT32 dims: [ 1 ] }]
output [{ name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] }]
"""

BAD_INIT = """
class TritonPythonModel:
    def initialize(self, args):
        raise RuntimeError("no weights in " + args["model_name"])

    def execute(self, requests):
        return []
"""

# A decoupled model whose execute raises, or returns something.
BAD_DECOUPLED = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        if int(pb_utils.get_input_tensor_by_name(requests[0], "MODE").as_numpy()[0]):
            return []
        raise KeyError("vocabulary")
"""

BAD_DECOUPLED_CONFIG = """
backend: "python"
model_transaction_policy { decoupled: true }
input [{ name: "MODE" data_type: TYPE_INT32 dims: [ 1 ] }]
output [{ name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] }]
"""

MODELS: dict[str, tuple[str, str | None]] = {
    "preprocess": (PREPROCESS, PREPROCESS_CONFIG),
    "bls": (BLS, BLS_CONFIG),
    "repeat": (REPEAT, REPEAT_CONFIG),
    "sum_repeat": (SUM_REPEAT, SUM_REPEAT_CONFIG),
    "raises": (RAISES, RAISES_CONFIG),
    "refused": (REFUSED, REFUSED_CONFIG),
    "instances": (INSTANCES, INSTANCES_CONFIG),
    "autocomplete": (AUTOCOMPLETE, None),  # no config.pbtxt: the model completes it
    "countdown": (COUNTDOWN, COUNTDOWN_CONFIG),
    "echo_request": (ECHO_REQUEST, ECHO_REQUEST_CONFIG),
    "wrong": (WRONG, WRONG_CONFIG),
    "bad_init": (BAD_INIT, WRONG_CONFIG),
    "bad_decoupled": (BAD_DECOUPLED, BAD_DECOUPLED_CONFIG),
}


def python_model(root: Path, name: str, source: str, config: str | None) -> None:
    """REPO/NAME/1/model.py and REPO/NAME/config.pbtxt (none when `config` is None)."""
    folder = root / name
    (folder / "1").mkdir(parents=True, exist_ok=True)
    (folder / "1" / "model.py").write_text(textwrap.dedent(source))
    if config is not None:
        (folder / "config.pbtxt").write_text(textwrap.dedent(config))


def triton_repository(root: Path) -> Path:
    """The Python models above and `addsub` (ONNX, config.pbtxt) that BLS calls."""
    for name, (source, config) in MODELS.items():
        python_model(root, name, source, config)
    (root / "addsub" / "1").mkdir(parents=True, exist_ok=True)
    models.addsub_onnx(root / "addsub" / "1" / "model.onnx")
    (root / "addsub" / "config.pbtxt").write_text(
        'name: "addsub"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 8\n'
    )
    return root
