"""TensorFlow SavedModels (`pip install 'modelyard[tensorflow]'`, tensorflow-cpu): Triton's
layout (`NAME/1/model.savedmodel/`, `platform: "tensorflow_savedmodel"` or `backend:
"tensorflow"`), OVMS's (`NAME/1/saved_model.pb` + `variables/`) and a bare `NAME.savedmodel/`.
The artifact path is the SavedModel's `saved_model.pb`; its folder is what loads.

The model runs as TF Serving and Triton's TensorFlow backend run it: the meta graph tagged
`serve` is loaded into a TF session and one signature's tensors are fed and fetched (a callable
made once per session, so a request costs one `Session.run`). Each session has its own thread
pools, so instances of several models never share (or fight over) one pool.

Config parameters (Triton's names first; modelyard's lower-case ones, which the advisor fills):
  TF_SIGNATURE_DEF / signature_def            the signature served (default serving_default,
                                              else the only one)
  TF_GRAPH_TAG / graph_tag                    the meta graph's tag (default serve)
  TF_NUM_INTRA_THREADS / intra_op_thread_count  threads inside one op, per session (0: the
                                              cores split between the model's instances)
  TF_NUM_INTER_THREADS / inter_op_thread_count  ops run side by side, per session (0: TF's
                                              default, one per core)
  MAX_SESSION_SHARE_COUNT                     instances that share one session (default 1: a
                                              session, so a copy of the weights, per instance)
"""

from __future__ import annotations

import logging
import os
import queue
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# Before TensorFlow starts: each session's own intra-op pool (TF shares the first session's
# otherwise), and no start-up chatter about CPU instructions in the server's log.
os.environ.setdefault("TF_OVERRIDE_GLOBAL_THREADPOOL", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf

from modelyard.errors import InvalidArgument, ModelLoadError
from modelyard.runtimes.base import Arrays, Runtime, Signature
from modelyard.spec.config import TensorSpec
from modelyard.tensors import datatype_of

DEFAULT_SIGNATURE = "serving_default"
SERVE_TAG = "serve"
Run = Callable[..., list[Any]]


def savedmodel_dir(path: Path) -> Path:
    """The SavedModel folder of an artifact path: the folder itself or its saved_model.pb's."""
    return path if path.is_dir() else path.parent


def parameter(params: dict[str, str], triton: str, own: str, default: str = "") -> str:
    """A parameter under Triton's name or modelyard's (Triton's first: a config written for
    Triton says it, and the advisor fills only modelyard's)."""
    return params.get(triton) or params.get(own) or default


def count(params: dict[str, str], triton: str, own: str) -> int:
    raw = parameter(params, triton, own, "0")
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ModelLoadError(f"parameter {own} ({triton}) must be a whole number, got {raw!r}")
    return value


class TensorFlowRuntime(Runtime):
    name = "tensorflow"
    inline_safe = True

    _signature: Signature
    _inputs: list[str]
    _outputs: list[str]

    def load(self) -> None:
        params = self.config.parameters
        instances = max(1, self.config.instance_count)
        intra = count(params, "TF_NUM_INTRA_THREADS", "intra_op_thread_count") or max(
            1, (os.cpu_count() or 1) // instances
        )
        inter = count(params, "TF_NUM_INTER_THREADS", "inter_op_thread_count")
        share = max(1, count(params, "MAX_SESSION_SHARE_COUNT", "max_session_share_count"))
        folder = savedmodel_dir(self.path)
        self._pool: queue.SimpleQueue[Run] = queue.SimpleQueue()
        self._sessions: list[tf.compat.v1.Session] = []
        try:
            for _ in range(-(-instances // share)):
                run = self._open(folder, intra, inter)
                for _ in range(share):
                    self._pool.put(run)
        except BaseException:
            self.unload()  # the sessions opened before the one that failed
            raise

    def signature(self) -> Signature:
        return self._signature

    def infer(self, inputs: Arrays) -> Arrays:
        run = self._pool.get()
        try:
            results = run(*[inputs[name] for name in self._inputs])
        except tf.errors.OpError as exc:
            raise InvalidArgument(f"TensorFlow rejected the inputs: {_message(exc)}") from exc
        except (ValueError, TypeError) as exc:
            raise InvalidArgument(f"TensorFlow rejected the inputs: {exc}") from exc
        finally:
            self._pool.put(run)
        return {name: _array(v) for name, v in zip(self._outputs, results, strict=True)}

    def unload(self) -> None:
        for session in self._sessions:
            session.close()
        self._sessions.clear()

    # -- loading -----------------------------------------------------------------------------

    def _open(self, folder: Path, intra: int, inter: int) -> Run:
        """A session with the model loaded and its own thread pools, and the callable that
        feeds the signature's inputs and fetches its outputs."""
        params = self.config.parameters
        tag = parameter(params, "TF_GRAPH_TAG", "graph_tag", SERVE_TAG)
        options = tf.compat.v1.ConfigProto(
            intra_op_parallelism_threads=intra,
            inter_op_parallelism_threads=inter,
            use_per_session_threads=True,
        )
        graph = tf.Graph()
        session = tf.compat.v1.Session(graph=graph, config=options)
        try:
            with graph.as_default(), _quiet():
                meta = tf.compat.v1.saved_model.loader.load(session, [tag], str(folder))
            signature = self._pick(meta.signature_def)
            self._read_signature(signature)
            feeds = [graph.get_tensor_by_name(signature.inputs[n].name) for n in self._inputs]
            fetches = [graph.get_tensor_by_name(signature.outputs[n].name) for n in self._outputs]
            run: Run = session.make_callable(fetches, feeds)
        except ModelLoadError:
            session.close()
            raise
        except Exception as exc:  # TF raises its own untyped errors on a bad folder
            session.close()
            raise ModelLoadError(f"TensorFlow cannot load {folder.name}: {exc}") from exc
        self._sessions.append(session)
        return run

    def _pick(self, signatures: Any) -> Any:
        """The signature the config names (TF_SIGNATURE_DEF), else serving_default, else the
        only one; TF's own entries (`__saved_model_init_op`) are not signatures to serve."""
        named = parameter(self.config.parameters, "TF_SIGNATURE_DEF", "signature_def")
        served = sorted(k for k in signatures if not k.startswith("__"))
        if named and named in served:
            return signatures[named]
        if not named and DEFAULT_SIGNATURE in served:
            return signatures[DEFAULT_SIGNATURE]
        if not named and len(served) == 1:
            return signatures[served[0]]
        wanted = f"signature {named!r}" if named else "a signature named in the config"
        raise ModelLoadError(
            f"{self.path.parent.name}: no {wanted} (TF_SIGNATURE_DEF); the SavedModel has "
            f"{', '.join(served) or 'no signatures'}"
        )

    def _read_signature(self, signature: Any) -> None:
        """Inputs and outputs named as the signature's keys; only the outputs the config lists
        when it lists some (as Triton's TensorFlow backend)."""
        inputs = [_spec(k, signature.inputs[k]) for k in sorted(signature.inputs)]
        outputs = [_spec(k, signature.outputs[k]) for k in sorted(signature.outputs)]
        listed = [t.name for t in self.config.outputs]
        if listed:
            outputs = [t for t in outputs if t.name in listed] or outputs
        self._signature = (inputs, outputs)
        self._inputs = [t.name for t in inputs]
        self._outputs = [t.name for t in outputs]


def _spec(name: str, info: Any) -> TensorSpec:
    dtype = tf.dtypes.as_dtype(info.dtype)
    if dtype == tf.string:
        datatype = "BYTES"
    else:
        try:
            datatype = datatype_of(np.empty(0, dtype.as_numpy_dtype))
        except (InvalidArgument, TypeError):
            raise ModelLoadError(
                f"tensor {name!r} has type {dtype.name}, which is not supported"
            ) from None
    if info.tensor_shape.unknown_rank:
        raise ModelLoadError(
            f"tensor {name!r} has no known rank in the signature; list it in the config"
        )
    return TensorSpec(name, datatype, [max(int(d.size), -1) for d in info.tensor_shape.dim])


def _array(value: Any) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind in "SU":
        return array.astype(object)
    return array


def _message(exc: tf.errors.OpError) -> str:
    """TF's message without its preamble and the graph trace it appends (`[[{{node ...}}]]`)."""
    text = exc.message.removeprefix("Graph execution error:")
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("[[")]
    return lines[0] if lines else type(exc).__name__


@contextmanager
def _quiet() -> Iterator[None]:
    """TensorFlow's Python logger held to errors: the TF1 loader, which is how a session loads
    a SavedModel, logs a deprecation note (TF2's loader has no sessions, so no pools per model)."""
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
