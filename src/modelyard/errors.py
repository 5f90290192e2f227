"""One error hierarchy for modelyard, carrying protocol-neutral codes.

Every front (KServe v2 HTTP, gRPC, OpenAI, Ollama) owns one table from `Code` to its
wire status; nothing else in the code base decides statuses.

    ModelyardError                  code         typical cause
    ├── InvalidArgument             INVALID_ARGUMENT   bad shape, dtype, JSON, missing input
    │   └── PayloadTooLarge         PAYLOAD_TOO_LARGE  body or message over the configured limit
    ├── FailedPrecondition          FAILED_PRECONDITION  action not allowed in this mode
    ├── Unauthenticated             UNAUTHENTICATED    missing or wrong API key
    ├── NotFound                    NOT_FOUND          unknown model or version
    ├── Unavailable                 UNAVAILABLE        model not ready / unloading
    ├── ResourceExhausted           RESOURCE_EXHAUSTED queue full
    ├── DeadlineExceeded            DEADLINE_EXCEEDED  request past its timeout
    ├── Unimplemented               UNIMPLEMENTED      a call this model cannot answer (a
    │                                                  decoupled model asked for one response)
    ├── ModelLoadError              FAILED_PRECONDITION  a model file that does not load
    └── Internal                    INTERNAL           a model that raised while predicting

Library exceptions (onnxruntime, sklearn, ...) are translated into these at the runtime
boundary with ``raise X from exc``; anything else that escapes is INTERNAL and logged once.
"""

from __future__ import annotations

import enum


class Code(str, enum.Enum):
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    NOT_FOUND = "NOT_FOUND"
    UNAVAILABLE = "UNAVAILABLE"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    INTERNAL = "INTERNAL"


class ModelyardError(Exception):
    """Base of every error a user can see; `str(err)` says what to fix."""

    code: Code = Code.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(ModelyardError):
    code = Code.INVALID_ARGUMENT


class PayloadTooLarge(InvalidArgument):
    code = Code.PAYLOAD_TOO_LARGE


class FailedPrecondition(ModelyardError):
    code = Code.FAILED_PRECONDITION


class Unauthenticated(ModelyardError):
    code = Code.UNAUTHENTICATED


class NotFound(ModelyardError):
    code = Code.NOT_FOUND


class Unavailable(ModelyardError):
    code = Code.UNAVAILABLE


class ResourceExhausted(ModelyardError):
    code = Code.RESOURCE_EXHAUSTED


class DeadlineExceeded(ModelyardError):
    code = Code.DEADLINE_EXCEEDED


class Unimplemented(ModelyardError):
    code = Code.UNIMPLEMENTED


class ModelLoadError(ModelyardError):
    code = Code.FAILED_PRECONDITION


class Internal(ModelyardError):
    code = Code.INTERNAL
