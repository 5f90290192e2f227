"""Ollama's model routes: list (`/api/tags`), show, what is loaded (`/api/ps`), copy, delete,
pull. Listings read the files (headers, digests) on worker threads and never load a model.

`/api/tags` and `/api/ps` list the language and embedding models (what Ollama clients can
use); the KServe repository index lists every model.
A model without a tag is shown as `NAME:latest`, and `NAME:latest` names the model `NAME`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from modelyard.core.models import ModelCard, ModelService, Progress, Residence
from modelyard.errors import InvalidArgument, ModelyardError
from modelyard.fronts.http_common import json_response
from modelyard.fronts.ollama import NDJSON, Handler, guard, read_json
from modelyard.fronts.ollama_output import ndjson, timestamp
from modelyard.fronts.ollama_schema import model_name

#: What /api/ps shows for a model that never unloads by itself.
FOREVER = "9999-12-31T23:59:59Z"


class OllamaModels:
    def __init__(self, models: ModelService, max_request_bytes: int) -> None:
        self.models = models
        self.max_request_bytes = max_request_bytes

    def routes(self) -> list[BaseRoute]:
        table: list[tuple[str, Handler, str]] = [
            ("/api/tags", self.tags, "GET"),
            ("/api/show", self.show, "POST"),
            ("/api/ps", self.ps, "GET"),
            ("/api/copy", self.copy, "POST"),
            ("/api/delete", self.delete, "DELETE"),
            ("/api/pull", self.pull, "POST"),
            ("/api/create", self.unsupported, "POST"),
            ("/api/push", self.unsupported, "POST"),
            ("/api/blobs/{digest}", self.unsupported, "POST"),
            ("/api/blobs/{digest}", self.unsupported, "HEAD"),
        ]
        return [Route(path, guard(handler), methods=[method]) for path, handler, method in table]

    async def unsupported(self, request: Request) -> Response:
        raise InvalidArgument(
            f"{request.url.path} is not supported: modelyard serves model files and folders "
            "(model.yaml for settings, see docs/ollama.md); put one into the repository with "
            "/api/pull and a path, or copy it into the repository folder"
        )

    # ---- listings ------------------------------------------------------------------------------

    async def tags(self, request: Request) -> Response:
        cards = await self.models.cards()
        return json_response({"models": [_tag(card) for card in cards]})

    async def show(self, request: Request) -> Response:
        body = await self._body(request)
        name, _ = model_name(body.get("model") or body.get("name"))
        card, template = await self.models.describe(name)
        return json_response(_show(card, template))

    async def ps(self, request: Request) -> Response:
        # text models only: what Ollama clients can use
        residents = [r for r in self.models.residents() if r.context_length is not None]
        cards = await self.models.cards_of([r.source for r in residents])
        rows = [_residence(r, card) for r, card in zip(residents, cards, strict=True)]
        return json_response({"models": rows})

    # ---- changes -------------------------------------------------------------------------------

    async def copy(self, request: Request) -> Response:
        body = await self._body(request)
        source, _ = model_name(body.get("source"))
        destination, _ = model_name(body.get("destination"))
        await self.models.copy(source, destination)
        return Response(status_code=200)

    async def delete(self, request: Request) -> Response:
        body = await self._body(request)
        name, _ = model_name(body.get("model") or body.get("name"))
        await self.models.delete(name)
        return Response(status_code=200)

    async def pull(self, request: Request) -> Response:
        body = await self._body(request)
        spec = body.get("model") or body.get("name")
        if not isinstance(spec, str) or not spec.strip():
            raise InvalidArgument(
                "model is required: a path on the server's machine or the name of a model package"
            )
        destination = body.get("destination")
        name = model_name(destination)[0] if destination else None
        steps = self.models.pull(spec.strip(), name)
        try:
            first = await anext(steps)  # errors before the transfer are HTTP statuses
        except BaseException:
            await steps.aclose()
            raise
        if body.get("stream", True) is not False:
            return StreamingResponse(_progress_lines(first, steps), media_type=NDJSON)
        last = first
        async for step in steps:
            last = step
        return json_response(_progress(last))

    # ---- helpers -------------------------------------------------------------------------------

    async def _body(self, request: Request) -> dict[str, Any]:
        body = await read_json(request, self.max_request_bytes)
        if not isinstance(body, dict):
            raise InvalidArgument("the request body must be a JSON object")
        return body


def display(name: str) -> str:
    return name if ":" in name else f"{name}:latest"


def _residence(resident: Residence, card: ModelCard) -> dict[str, Any]:
    until = resident.expires_at
    row: dict[str, Any] = {
        "name": display(resident.name),
        "model": display(resident.name),
        "size": resident.estimate or card.size,
        "size_vram": 0,
        "digest": card.digest,
        "details": _details(card),
        "expires_at": FOREVER if until is None else timestamp(until),
    }
    if resident.context_length is not None:
        row["context_length"] = resident.context_length
    return row


def _details(card: ModelCard) -> dict[str, Any]:
    return {
        "parent_model": "",
        "format": card.format,
        "family": card.family,
        "families": [card.family] if card.family else None,
        "parameter_size": card.parameter_size,
        "quantization_level": card.quantization,
    }


def _tag(card: ModelCard) -> dict[str, Any]:
    return {
        "name": display(card.name),
        "model": display(card.name),
        "modified_at": timestamp(card.modified),
        "size": card.size,
        "digest": card.digest,
        "details": _details(card),
    }


def _show(card: ModelCard, template: str | None) -> dict[str, Any]:
    if card.error:
        raise InvalidArgument(f"model {card.name!r} cannot be read: {card.error}")
    template = template if template is not None else card.chat_template
    info = {k: v for k, v in card.metadata.items() if k != "tokenizer.chat_template"}
    parameters = "\n".join(
        f"{k} {v}" for k, v in sorted(card.config_parameters.items()) if k != "chat_template"
    )
    return {
        "license": str(card.metadata.get("general.license") or ""),
        "modelfile": _modelfile(card, template),
        "parameters": parameters,
        "template": template,
        "details": _details(card),
        "model_info": info,
        "capabilities": card.capabilities,
        "modified_at": timestamp(card.modified),
    }


def _modelfile(card: ModelCard, template: str) -> str:
    lines = [
        "# For reference only: modelyard reads model.yaml, not Modelfiles",
        f"FROM {card.artifact}",
    ]
    if template:
        lines.append(f'TEMPLATE """{template}"""')
    lines += [
        f"PARAMETER {k} {v}"
        for k, v in sorted(card.config_parameters.items())
        if k != "chat_template"
    ]
    return "\n".join(lines) + "\n"


def _progress(step: Progress) -> dict[str, Any]:
    out: dict[str, Any] = {"status": step.status}
    if step.digest:
        out["digest"] = step.digest
    if step.total:
        out.update(total=step.total, completed=step.completed)
    return out


async def _progress_lines(
    first: Progress, rest: AsyncGenerator[Progress, None]
) -> AsyncIterator[bytes]:
    try:
        yield ndjson(_progress(first))
        async for step in rest:
            yield ndjson(_progress(step))
    except ModelyardError as exc:
        yield ndjson({"error": exc.message})
    finally:
        await rest.aclose()
