"""The `context` a TorchServe handler receives, with the attributes and methods of
TorchServe's `ts.context.Context` that handlers use: `system_properties` (model_dir,
batch_size, gpu_id), `manifest`, `model_yaml_config`, `metrics`, and per request of a batch
its headers, its response content type, status and headers.

Written here rather than imported from the `torchserve` package so that a custom handler needs
only torch: the package is needed only by handlers built on its `BaseHandler`.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("modelyard.torchserve")

#: The server name and version handlers see (`system_properties["server_name"]`, ...).
SERVER_NAME = "MMS"
SERVER_VERSION = "0.12.0"


class RequestProcessor:
    """One request of a batch: its headers in, its status, content type and headers out."""

    def __init__(self, request_header: dict[str, str]) -> None:
        self._request_header = request_header
        self._status_code = 200
        self._reason_phrase: str | None = None
        self._response_header: dict[str, str] = {}

    def get_request_property(self, key: str) -> str | None:
        return self._request_header.get(key.lower())

    def get_request_properties(self) -> dict[str, str]:
        return self._request_header

    def report_status(self, code: int, reason: str | None = None) -> None:
        self._status_code = code
        self._reason_phrase = reason

    def get_response_status_code(self) -> int:
        return self._status_code

    def get_response_status_phrase(self) -> str | None:
        return self._reason_phrase

    def add_response_property(self, key: str, value: str) -> None:
        self._response_header[key] = value

    def get_response_header(self, key: str) -> str | None:
        return self._response_header.get(key)

    def get_response_headers(self) -> dict[str, str]:
        return self._response_header


class Metrics:
    """`context.metrics`: handlers record times and counters through it; they go to the debug
    log (the server's own metrics are at /metrics)."""

    def _record(self, kind: str, name: str, value: Any, unit: str = "") -> None:
        log.debug("handler metric %s %s=%s%s", kind, name, value, unit)

    def add_time(self, name: str, value: Any, idx: Any = None, unit: str = "ms", *_: Any) -> None:
        self._record("time", name, value, unit)

    def add_size(self, name: str, value: Any, idx: Any = None, unit: str = "MB", *_: Any) -> None:
        self._record("size", name, value, unit)

    def add_counter(self, name: str, value: Any, idx: Any = None, *_: Any) -> None:
        self._record("counter", name, value)

    def add_percent(self, name: str, value: Any, idx: Any = None, *_: Any) -> None:
        self._record("percent", name, value, "%")

    def add_metric(self, name: str, value: Any, unit: str = "", *_: Any, **__: Any) -> None:
        self._record("metric", name, value, unit)

    def add_error(self, name: str, value: Any) -> None:
        self._record("error", name, value)


class Context:
    """What TorchServe passes to `initialize(context)` and `handle(data, context)`."""

    def __init__(
        self,
        model_name: str,
        model_dir: str,
        manifest: dict[str, Any],
        batch_size: int,
        model_yaml_config: dict[str, Any] | None = None,
    ) -> None:
        self.model_name = model_name
        self.manifest = manifest
        self._system_properties: dict[str, Any] = {
            "model_dir": model_dir,
            "gpu_id": None,
            "batch_size": batch_size,
            "server_name": SERVER_NAME,
            "server_version": SERVER_VERSION,
            "limit_max_image_pixels": True,
        }
        self.request_ids: dict[int, str] | None = None
        self.request_processor: list[RequestProcessor] = []
        self.metrics = Metrics()
        self.model_yaml_config = model_yaml_config or {}
        self.stopping_criteria: Any = None
        self.cl_socket: Any = None

    @property
    def system_properties(self) -> dict[str, Any]:
        return self._system_properties

    def start_batch(self, ids: list[str], headers: list[dict[str, str]]) -> None:
        """A new batch: one request processor per request (TorchServe's frontend does this)."""
        self.request_ids = dict(enumerate(ids))
        self.request_processor = [RequestProcessor(h) for h in headers]

    def get_request_id(self, idx: int = 0) -> str | None:
        return self.request_ids.get(idx) if self.request_ids else None

    def get_request_header(self, idx: int, key: str) -> str | None:
        return self.request_processor[idx].get_request_property(key)

    def get_all_request_header(self, idx: int) -> dict[str, str]:
        return self.request_processor[idx].get_request_properties()

    def set_response_content_type(self, idx: int, value: str) -> None:
        self.set_response_header(idx, "content-type", value)

    def get_response_content_type(self, idx: int) -> str | None:
        return self.get_response_headers(idx).get("content-type")

    def get_response_status(self, idx: int) -> tuple[int, str | None]:
        processor = self.request_processor[idx]
        return processor.get_response_status_code(), processor.get_response_status_phrase()

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        if self.request_processor:
            self.request_processor[idx].report_status(code, phrase)

    def set_all_response_status(self, code: int = 200, phrase: str = "") -> None:
        for processor in self.request_processor:
            processor.report_status(code, phrase)

    def get_response_headers(self, idx: int) -> dict[str, str]:
        return self.request_processor[idx].get_response_headers()

    def set_response_header(self, idx: int, key: str, value: str) -> None:
        self.request_processor[idx].add_response_property(key, value)

    def get_sequence_id(self, idx: int) -> str:
        return self.get_request_header(idx, "ts_request_sequence_id") or ""
