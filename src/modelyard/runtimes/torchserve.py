"""TorchServe model archives (`.mar`), served by their own handlers as TorchServe runs them.

Loading unpacks the archive into a folder of its own (the handler's `model_dir`), imports the
handler the manifest names — a file in the archive (`handler.py`, `handler.py:fn`) or one of
TorchServe's default handlers by name (`image_classifier`, `text_classifier`, ... from the
`torchserve` package's `ts.torch_handler`) — and starts it as TorchServe's model loader does: a
module with a function `handle` is called once with no data to initialise, a module defining
one class is instantiated and `initialize(context)` called. `instance_group` count N starts N
handlers (TorchServe's N workers), each taking one batch at a time.

A batch reaches the handler as TorchServe sends it: a list with one dict per request (its
parts by name — `body` for a raw body — JSON parts decoded, text parts as str, others bytes),
and each answer goes back as TorchServe would write it (bytes and str as they are, a tensor
`torch.save`d, anything else as JSON). The tensors that carry both are in
`modelyard.spec.torchserve`. Archives run in a worker process by default: a handler is code.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import logging
import queue
import sys
import tempfile
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelyard.errors import (
    Internal,
    InvalidArgument,
    ModelLoadError,
    ModelyardError,
    NotFound,
    PayloadTooLarge,
    ResourceExhausted,
)
from modelyard.runtimes.base import Arrays, RequestArrays, ResponseArrays, Runtime, Signature
from modelyard.runtimes.torchserve_archive import (
    Manifest,
    batching,
    extract,
    read_manifest,
    read_model_config,
)
from modelyard.runtimes.torchserve_context import Context
from modelyard.spec import torchserve as ts
from modelyard.spec.config import TensorSpec

log = logging.getLogger("modelyard.torchserve")

#: TorchServe's message for a handler that raised (status 503).
PREDICTION_FAILED = "Prediction failed"
#: Where TorchServe's default handlers live (the `torchserve` package).
DEFAULT_HANDLERS = "ts.torch_handler"

Entry = Callable[[Any, Context], Any]


@dataclass
class Handler:
    """One started handler (a TorchServe worker): its entry point and its context."""

    entry: Entry
    context: Context


class TorchServeRuntime(Runtime):
    name = "torchserve"
    takes_request_lists = True

    manifest: Manifest

    def load(self) -> None:
        self.manifest = read_manifest(self.path)
        self._folder = tempfile.TemporaryDirectory(prefix=f"modelyard-mar-{self.config.name}-")
        model_dir = Path(self._folder.name)
        extract(self.path, model_dir)
        self._yaml = read_model_config(self.path, self.manifest)
        self._batch_size = batching(self.path).batch_size
        self._handlers: queue.SimpleQueue[Handler] = queue.SimpleQueue()
        with _archive_modules(model_dir):
            module, function = _import_handler(self.manifest.handler, model_dir)
            for _ in range(max(1, self.config.instance_count)):
                self._handlers.put(self._start(module, function, model_dir))

    def _start(self, module: types.ModuleType, function: str, model_dir: Path) -> Handler:
        batch_size = self.config.max_batch_size or self._batch_size
        context = Context(
            self.config.name, str(model_dir), self.manifest.raw, batch_size, self._yaml
        )
        try:
            return Handler(_entry_point(module, function, context), context)
        except ModelyardError:
            raise
        except Exception as exc:
            raise ModelLoadError(
                f"model {self.config.name!r}: handler {self.manifest.handler!r} failed to "
                f"initialize: {exc!r}"
            ) from exc

    def signature(self) -> Signature:
        return (
            [TensorSpec(ts.INPUT, "BYTES", [-1, -1])],
            [TensorSpec(ts.OUTPUT, "BYTES", [-1, 1])],
        )

    def declared_max_batch_size(self) -> int:
        return self._batch_size

    def infer(self, inputs: Arrays) -> Arrays:
        [result] = self.infer_many([inputs])
        if isinstance(result, ModelyardError):
            raise result
        return result

    def infer_many(self, parts: list[Arrays]) -> list[Arrays | ModelyardError]:
        handler = self._handlers.get()  # one batch at a time per handler, as per worker
        try:
            return self._run(handler, parts)
        finally:
            self._handlers.put(handler)

    def _run(self, handler: Handler, parts: list[Arrays]) -> list[Arrays | ModelyardError]:
        rows = [row for part in parts for row in _rows(part)]
        ids = [f"{i}" for i in range(len(rows))]
        handler.context.start_batch(ids, [headers for _, headers in rows])
        try:
            answers = handler.entry([data for data, _ in rows], handler.context)
        except Exception as exc:
            log.warning("model %s: handler raised %r", self.config.name, exc, exc_info=exc)
            error = _prediction_error(exc)
            return [error] * len(parts)
        if not isinstance(answers, list) or len(answers) != len(rows):
            got = len(answers) if isinstance(answers, list) else type(answers).__name__
            error = Internal(
                f"{PREDICTION_FAILED}: the handler answered {got} for a batch of {len(rows)} "
                "requests (number of batch response mismatched)"
            )
            return [error] * len(parts)
        out: list[Arrays | ModelyardError] = []
        start = 0
        for part in parts:
            count = len(part[ts.INPUT])
            out.append(_answers(answers[start : start + count], handler.context, start))
            start += count
        return out

    def unload(self) -> None:
        folder = getattr(self, "_folder", None)
        if folder is not None:
            with contextlib.suppress(ValueError):
                sys.path.remove(folder.name)
            folder.cleanup()


# ---- the handler -----------------------------------------------------------------------------


@contextlib.contextmanager
def _archive_modules(model_dir: Path) -> Iterator[None]:
    """The archive's folder goes first on sys.path (a handler imports its `model.py` by name,
    as under TorchServe; it stays there until unload, for imports the handler makes later);
    once the handler has loaded, the modules imported from the folder leave `sys.modules`, so
    a next archive's `model` or `handler` is its own (only `isolation: thread` puts two in one
    process)."""
    folder = str(model_dir)
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        for name, module in list(sys.modules.items()):
            if str(getattr(module, "__file__", None) or "").startswith(folder):
                del sys.modules[name]


def _import_handler(handler: str, model_dir: Path) -> tuple[types.ModuleType, str]:
    """The handler's module and entry function name, as TorchServe's model loader finds them:
    a module in the archive, else a default handler of the `torchserve` package."""
    module_name, _, function = handler.partition(":")
    module_name = Path(module_name).name.removesuffix(".py")
    if (model_dir / f"{module_name}.py").is_file():
        return _import(module_name, handler), function or "handle"
    return _import(f"{DEFAULT_HANDLERS}.{module_name}", handler), function or "handle"


def _import(module_name: str, handler: str) -> types.ModuleType:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if module_name.startswith(DEFAULT_HANDLERS) and exc.name in ("ts", DEFAULT_HANDLERS):
            raise ModelLoadError(
                f"handler {handler!r} is one of TorchServe's default handlers, which need "
                "the torchserve package: pip install 'modelyard[torchserve]'"
            ) from exc
        raise ModelLoadError(f"importing handler {handler!r} failed: {exc!r}") from exc
    except Exception as exc:
        raise ModelLoadError(f"importing handler {handler!r} failed: {exc!r}") from exc


def _entry_point(module: types.ModuleType, function: str, context: Context) -> Entry:
    """A module-level function is initialised by a call with no data; otherwise the module's
    one class is instantiated and `initialize(context)` called (TorchServe's rules)."""
    found = getattr(module, function, None)
    if inspect.isfunction(found):
        found(None, context)
        entry: Entry = found
        return entry
    classes = [
        cls
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if cls.__module__ == module.__name__
    ]
    if len(classes) != 1:
        raise ModelLoadError(
            f"handler module {module.__name__!r} must define one class (with initialize and "
            f"{function}) or a function {function!r}; it defines {len(classes)} classes"
        )
    service = classes[0]()
    initialize = getattr(service, "initialize", None)
    if callable(initialize):
        initialize(context)
    bound = getattr(service, function, None)
    if not callable(bound):
        raise ModelLoadError(f"handler class {classes[0].__name__} has no method {function!r}")
    return bound  # type: ignore[no-any-return]


def _prediction_error(exc: Exception) -> ModelyardError:
    """A handler's exception as TorchServe answers it: its own status when it carries one
    (TorchServe's PredictionException has `error_code`), else 503 "Prediction failed"."""
    code = getattr(exc, "error_code", None)
    message = str(getattr(exc, "message", "") or exc)
    if code == 404:
        return NotFound(message)
    if code == 413:
        return PayloadTooLarge(message)
    if code == 507 or isinstance(exc, MemoryError):
        return ResourceExhausted(message or "out of memory")
    if isinstance(code, int) and 400 <= code < 500:
        return InvalidArgument(message)
    return Internal(f"{PREDICTION_FAILED}: {exc!r}")


# ---- requests in, answers out ---------------------------------------------------------------


def _rows(part: Arrays) -> list[tuple[dict[str, Any], dict[str, str]]]:
    """Each row of one request as the handler's data item (its parts by name, decoded by
    content type) with the request's headers."""
    body = part[ts.INPUT]
    parameters = part.parameters if isinstance(part, RequestArrays) else {}
    width = body.shape[1] if body.ndim == 2 else 1
    names = _strings(
        parameters.get(ts.NAMES), width, ["body", *(f"body{i}" for i in range(1, width))]
    )
    types_ = _strings(parameters.get(ts.CONTENT_TYPES), width, [""] * width)
    headers = parameters.get(ts.HEADERS)
    headers = (
        {str(k).lower(): str(v) for k, v in headers.items()} if isinstance(headers, dict) else {}
    )
    rows = []
    for row in body.reshape(len(body), -1):
        data = {
            name: _decode(value, kind) for name, value, kind in zip(names, row, types_, strict=True)
        }
        rows.append((data, headers))
    return rows


def _strings(value: Any, width: int, default: list[str]) -> list[str]:
    if not isinstance(value, list) or len(value) != width:
        return default
    return [str(v) for v in value]


def _decode(value: Any, content_type: str) -> Any:
    """A part as TorchServe hands it to a handler: JSON decoded, text as str, else bytes."""
    data = value if isinstance(value, bytes) else str(value).encode()
    kind = content_type.split(";")[0].strip().lower()
    try:
        if kind == "application/json":
            return json.loads(data)
        if kind.startswith("text"):
            return data.decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return data
    return data


def _answers(answers: list[Any], context: Context, start: int) -> Arrays | ModelyardError:
    """One request's answers (one per row) as its output tensor, with the content type,
    status and headers the handler set on its first row."""
    payloads: list[bytes] = []
    kind = None
    for answer in answers:
        try:
            payload, kind_of = _encode(answer)
        except TypeError:
            return Internal("Unsupported model output data type.")
        payloads.append(payload)
        kind = kind or kind_of
    headers = dict(context.get_response_headers(start))
    kind = headers.pop("content-type", None) or kind
    status, _ = context.get_response_status(start)
    parameters: dict[str, Any] = {ts.STATUS: status}
    if kind:
        parameters[ts.CONTENT_TYPE] = kind
    if headers:
        parameters[ts.RESPONSE_HEADERS] = headers
    output = np.empty((len(payloads), 1), dtype=object)
    output[:, 0] = payloads
    return ResponseArrays({ts.OUTPUT: output}, parameters)


def _encode(answer: Any) -> tuple[bytes, str | None]:
    """An answer as TorchServe writes it: bytes and str as they are, a tensor `torch.save`d,
    anything else as JSON (indented as TorchServe does)."""
    if isinstance(answer, (bytes, bytearray)):
        return bytes(answer), None
    if isinstance(answer, str):
        return answer.encode("utf-8"), None
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(answer, torch.Tensor):
        import io

        buffer = io.BytesIO()
        torch.save(answer, buffer)
        return buffer.getvalue(), None
    return json.dumps(answer, indent=2).encode("utf-8"), "application/json"
