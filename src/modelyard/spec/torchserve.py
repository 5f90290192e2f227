"""How a TorchServe request travels as tensors, between the TorchServe front and the
torchserve runtime (the KServe v2 fronts send the same tensors).

One request is one row: the input `body` (BYTES, shape [1, parts]) holds the request's parts
(a raw body is one part called "body"; a form sends one part per field), the request's
parameters their names, content types and the HTTP headers. The answer is the output
`output` (BYTES, [1, 1]): the bytes TorchServe would send, with its content type, status and
headers in the response's parameters.
"""

from __future__ import annotations

INPUT = "body"
OUTPUT = "output"

#: Request parameters: the parts' names (default: "body" for each), their content types
#: (default: none, the handler gets bytes) and the request's headers (lower-case names).
NAMES = "torchserve_names"
CONTENT_TYPES = "torchserve_content_types"
HEADERS = "torchserve_headers"

#: Response parameters: the answer's content type, HTTP status and extra headers.
CONTENT_TYPE = "content_type"
STATUS = "torchserve_status"
RESPONSE_HEADERS = "torchserve_response_headers"
