"""The guard every HTTP front shares: each error in the front's own shape and status, 429 and
503 with Retry-After, an error nobody translated logged once with its traceback."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

import orjson
import pytest
from starlette.requests import Request
from starlette.responses import Response

from modelyard.errors import Code, InvalidArgument, ModelyardError, ResourceExhausted, Unavailable
from modelyard.fronts import ollama, tgi
from modelyard.fronts.http_common import HTTP_STATUS, error_body, guard
from modelyard.fronts.openai import error_body as openai_body


def _request() -> Request:
    return Request({"type": "http", "method": "POST", "path": "/v1/completions", "headers": []})


def _call(
    error: Exception,
    body: Callable[[ModelyardError], Any] = error_body,
    statuses: Mapping[Code, int] = HTTP_STATUS,
) -> Response:
    async def raising(request: Request) -> Response:
        raise error

    async def call() -> Response:
        return await guard(raising, body, statuses)(_request())

    return asyncio.run(call())


def test_an_unexpected_error_is_500_in_the_fronts_shape_with_its_traceback_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR):
        response = _call(RuntimeError("boom"), openai_body)
    assert response.status_code == 500
    error = orjson.loads(response.body)["error"]
    assert error["type"] == "server_error" and "RuntimeError" in error["message"]
    assert "boom" not in error["message"]  # the details are in the log, not the answer
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.exc_info is not None and "POST /v1/completions" in record.getMessage()


@pytest.mark.parametrize(
    ("error", "status", "retry"),
    [
        (ResourceExhausted("full"), 429, True),
        (Unavailable("loading"), 503, True),
        (InvalidArgument("bad"), 400, False),
    ],
)
def test_retry_after_on_429_and_503(error: Exception, status: int, retry: bool) -> None:
    response = _call(error, openai_body)
    assert response.status_code == status
    assert ("retry-after" in response.headers) is retry
    assert orjson.loads(response.body)["error"]["message"] == str(error)


def test_ollama_answers_a_full_queue_with_503() -> None:
    response = _call(ResourceExhausted("full"), error_body, ollama.STATUS)
    assert response.status_code == 503 and orjson.loads(response.body) == {"error": "full"}


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        (InvalidArgument("bad"), 422, "validation"),
        (ResourceExhausted("full"), 429, "overloaded"),
        (Unavailable("loading"), 503, "unavailable"),
        (RuntimeError("boom"), 424, "generation"),
    ],
)
def test_tgi_answers_in_its_shape_and_statuses(error: Exception, status: int, kind: str) -> None:
    response = _call(error, tgi.error_body, tgi.TGI_STATUS)
    assert response.status_code == status
    assert orjson.loads(response.body)["error_type"] == kind
