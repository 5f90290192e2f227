"""schemathesis against the server's own /openapi.json: every operation, with bodies from its
schemas and beyond them; each answer must be no server error and must match the document
(status, content type, schema)."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.fuzz.oracle import CASES, FUZZ, HANG_S, tally
from tests.server_process import ServerProcess

#: Operations left out: they change the repository the other fuzz tests use (delete, copy,
#: unload, load) or stream until a pull ends.
CHANGES = {
    "/api/delete",
    "/api/copy",
    "/v2/repository/models/{model}/unload",
    "/v2/repository/models/{model}/load",
}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def test_every_operation_matches_the_document(fuzzed: ServerProcess) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzzed.url}/openapi.json")
    results = list(schema.get_all_operations())
    operations = [r.ok() for r in results if isinstance(r, Ok)]
    assert len(operations) == len(results)  # every operation in the document reads
    operations = [op for op in operations if op.path not in CHANGES]
    assert len(operations) > 40
    per_operation = max(2, CASES // 20)  # about 2 x CASES in all
    for operation in operations:

        @settings(FUZZ, max_examples=per_operation)
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            tokens = case.body.get("max_tokens") if isinstance(case.body, dict) else None
            if isinstance(tokens, int) and tokens > 8:  # a few tokens are enough
                case.body["max_tokens"] = 8
            reply = case.call_and_validate(base_url=fuzzed.url, checks=CHECKS, timeout=HANG_S)
            tally("OpenAPI (schemathesis)", reply.status_code)

        try:
            check()
        except Exception as exc:
            pytest.fail(f"{operation.method.upper()} {operation.path}: {exc}")
