"""The JSON Schemas (OpenAPI 3.0's dialect) of what the HTTP fronts read and write, for
`/openapi.json`. The limits come from the code that checks requests: the sampling options'
readers (core/sampling.py) carry their own schemas, and the fronts' bounds, datatypes, option
names and tool-name pattern are the constants their readers use; tests/fronts/test_openapi.py
checks the readers accept what these schemas allow."""

from __future__ import annotations

from typing import Any

from modelyard import tensors
from modelyard.core import sampling, tools
from modelyard.fronts import ollama_schema, openai_schema, tgi_schema

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(properties: Schema, required: tuple[str, ...] = (), **extra: Any) -> Schema:
    out: Schema = {"type": "object", "properties": properties, **extra}
    if required:
        out["required"] = list(required)
    return out


_STRING: Schema = {"type": "string"}
#: Not blank: a character that is neither ECMAScript's white space (the pattern's dialect) nor
#: one Python's `str.strip()` also removes (\x1c-\x1f, \x85), as the readers strip names.
_NOT_BLANK = r"[^\s\x1c-\x1f\x85]"
_NAME: Schema = {
    "type": "string",
    "minLength": 1,
    "pattern": _NOT_BLANK,
    "description": "a model's name",
}
_BOOL: Schema = {"type": "boolean"}
_INT: Schema = {"type": "integer"}
_ANY_OBJECT: Schema = {"type": "object", "additionalProperties": True}
_IDS: Schema = {"type": "array", "items": _INT, "description": "token ids"}


def _ints(low: int, high: int) -> Schema:
    return {"type": "integer", "minimum": low, "maximum": high}


# ---- errors -------------------------------------------------------------------------------

ERRORS: dict[str, Schema] = {
    "Error": _object({"error": _STRING}, ("error",), description="KServe's and Ollama's"),
    "OpenAIError": _object(
        {
            "error": _object(
                {
                    "message": _STRING,
                    "type": _STRING,
                    "param": {"type": "string", "nullable": True},
                    "code": {"description": "a string, or the HTTP status"},
                },
                ("message", "type"),
            )
        },
        ("error",),
    ),
}

# ---- KServe v2 ----------------------------------------------------------------------------

_TENSOR_META = {
    "name": _STRING,
    "datatype": {"type": "string", "enum": list(tensors.DATATYPES)},
    "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
}
_BINARY_SIZE = _object(
    {"binary_data_size": {"type": "integer", "minimum": 0}},
    description="binary_data_size: the tensor's bytes follow the JSON "
    "(Inference-Header-Content-Length gives the JSON's length)",
)
KSERVE: dict[str, Schema] = {
    "InferInput": _object(
        {**_TENSOR_META, "data": {"type": "array", "items": {}}, "parameters": _BINARY_SIZE},
        ("name", "shape", "datatype"),
        description="`data` (row-major, nested or flat) or parameters.binary_data_size",
    ),
    "InferRequest": _object(
        {
            "id": _STRING,
            "parameters": _object({"binary_data_output": _BOOL}, additionalProperties=True),
            "inputs": {"type": "array", "items": ref("InferInput"), "minItems": 1},
            "outputs": {
                "type": "array",
                "items": _object(
                    {"name": _STRING, "parameters": _object({"binary_data": _BOOL})}, ("name",)
                ),
            },
        },
        ("inputs",),
    ),
    "InferOutput": _object(
        {**_TENSOR_META, "data": {"type": "array", "items": {}}, "parameters": _BINARY_SIZE},
        ("name", "shape", "datatype"),
    ),
    "InferResponse": _object(
        {
            "model_name": _STRING,
            "model_version": _STRING,
            "id": _STRING,
            "outputs": {"type": "array", "items": ref("InferOutput")},
        },
        ("model_name", "outputs"),
    ),
    # a model's tensors: -1 is a dimension of any size (the batch, a dynamic axis)
    "TensorMetadata": _object(
        {
            **_TENSOR_META,
            "shape": {
                "type": "array",
                "items": {"type": "integer", "minimum": -1},
                "description": "-1: any size",
            },
        },
        ("name", "datatype", "shape"),
    ),
    "ModelMetadata": _object(
        {
            "name": _STRING,
            "versions": {"type": "array", "items": _STRING},
            "platform": _STRING,
            "inputs": {"type": "array", "items": ref("TensorMetadata")},
            "outputs": {"type": "array", "items": ref("TensorMetadata")},
            "parameters": _ANY_OBJECT,
        },
        ("name", "platform", "inputs", "outputs"),
    ),
    "ServerMetadata": _object(
        {"name": _STRING, "version": _STRING, "extensions": {"type": "array", "items": _STRING}},
        ("name", "version", "extensions"),
    ),
    "RepositoryIndex": {
        "type": "array",
        "items": _object(
            {"name": _STRING, "version": _STRING, "state": _STRING, "reason": _STRING},
            ("name", "state"),
        ),
    },
    "RepositoryIndexRequest": _object({"ready": _BOOL}),
    "LoadRequest": _object(
        {
            "parameters": _object(
                {
                    "config": {
                        "type": "string",
                        "description": "a model config (Triton's JSON) to load with",
                    }
                },
                additionalProperties=True,
            )
        }
    ),
    "ModelStatistics": _object(
        {"model_stats": {"type": "array", "items": _ANY_OBJECT}}, ("model_stats",)
    ),
}

# ---- OpenAI -------------------------------------------------------------------------------

_TEXT_OR_PARTS = {
    "oneOf": [
        _STRING,
        {
            "type": "array",
            "items": _object(
                {"type": {"type": "string", "enum": ["text"]}, "text": _STRING}, ("type",)
            ),
        },
    ],
    "nullable": True,
}
_FUNCTION = _object(
    {
        "name": {"type": "string", "pattern": tools._NAME.pattern},
        "description": _STRING,
        "parameters": _object({"type": {"type": "string", "enum": ["object"]}}),
    },
    ("name",),
)
_TOOLS = {
    "type": "array",
    "items": _object(
        {"type": {"type": "string", "enum": ["function"]}, "function": _FUNCTION}, ("function",)
    ),
}
_LOGPROBS = _ints(0, openai_schema.MAX_LOGPROBS)
_COMMON = {
    "model": _NAME,
    **sampling.schemas(),
    "n": _ints(1, openai_schema.MAX_N),
    "stream": _BOOL,
    "stream_options": _object({"include_usage": _BOOL}),
    "prompt_logprobs": {"oneOf": [_BOOL, _LOGPROBS]},
    "response_format": _object(
        {
            "type": {"type": "string", "enum": ["text", "json_object", "json_schema"]},
            "json_schema": _object({"name": _STRING, "schema": _ANY_OBJECT}),
        },
        ("type",),
    ),
}
_USAGE = _object(
    {"prompt_tokens": _INT, "completion_tokens": _INT, "total_tokens": _INT},
    ("prompt_tokens", "total_tokens"),
)
_ID_LISTS = {"type": "array", "items": {**_IDS, "minItems": 1}, "minItems": 1}
OPENAI: dict[str, Schema] = {
    "ChatMessage": _object(
        {"role": _STRING, "content": _TEXT_OR_PARTS, "name": _STRING}, ("role",)
    ),
    "ChatCompletionRequest": _object(
        {
            **_COMMON,
            "messages": {"type": "array", "items": ref("ChatMessage"), "minItems": 1},
            "logprobs": _BOOL,
            "top_logprobs": _LOGPROBS,
            "tools": _TOOLS,
            "tool_choice": {
                "oneOf": [
                    {"type": "string", "enum": ["auto", "none", "required"]},
                    _object(
                        {"type": _STRING, "function": _object({"name": _STRING}, ("name",))},
                        ("type", "function"),
                    ),
                ]
            },
            "parallel_tool_calls": _BOOL,
            "chat_template_kwargs": _ANY_OBJECT,
            "add_generation_prompt": _BOOL,
        },
        ("model", "messages"),
    ),
    "CompletionRequest": _object(
        {
            **_COMMON,
            "prompt": {
                "oneOf": [
                    _STRING,
                    {"type": "array", "items": _STRING, "minItems": 1},
                    {**_IDS, "minItems": 1},
                    _ID_LISTS,
                ]
            },
            "echo": _BOOL,
            "logprobs": _LOGPROBS,
        },
        ("model", "prompt"),
    ),
    "Completion": _object(
        {
            "id": _STRING,
            "object": _STRING,
            "created": _INT,
            "model": _STRING,
            "choices": {"type": "array", "items": _ANY_OBJECT},
            "usage": _USAGE,
        },
        ("id", "object", "model", "choices"),
        description="chat.completion or text_completion; with stream: true, "
        "server-sent events of chunks ending with [DONE]",
    ),
    "EmbeddingRequest": _object(
        {
            "model": _NAME,
            "input": {
                "oneOf": [
                    _STRING,
                    {"type": "array", "items": _STRING, "minItems": 1},
                    {**_IDS, "minItems": 1},
                    _ID_LISTS,
                ]
            },
            "encoding_format": {"type": "string", "enum": ["float", "base64"]},
            "dimensions": {"type": "integer", "minimum": 1},
        },
        ("model", "input"),
    ),
    "Embeddings": _object(
        {
            "object": _STRING,
            "data": {"type": "array", "items": _ANY_OBJECT},
            "model": _STRING,
            "usage": _USAGE,
        },
        ("object", "data", "model"),
    ),
    "ModelCard": _object(
        {"id": _STRING, "object": _STRING, "owned_by": _STRING, "max_model_len": _INT},
        ("id", "object"),
    ),
    "ModelList": _object(
        {"object": _STRING, "data": {"type": "array", "items": ref("ModelCard")}},
        ("object", "data"),
    ),
    "TokenizeRequest": _object(
        {
            "model": _NAME,
            "prompt": _STRING,
            "messages": {"type": "array", "items": ref("ChatMessage"), "minItems": 1},
            "add_special_tokens": _BOOL,
            "add_generation_prompt": _BOOL,
            "return_token_strs": _BOOL,
        },
        description="prompt, or messages through the model's chat template",
    ),
    "Tokens": _object(
        {
            "count": _INT,
            "max_model_len": _INT,
            "tokens": _IDS,
            "token_strs": {"type": "array", "items": _STRING},
        },
        ("count", "tokens"),
    ),
    "DetokenizeRequest": _object({"model": _NAME, "tokens": _IDS}, ("tokens",)),
    "Detokenized": _object({"prompt": _STRING}, ("prompt",)),
    "Version": _object({"version": _STRING}, ("version",)),
}

# ---- Ollama -------------------------------------------------------------------------------


def _ollama_options() -> Schema:
    """Ollama's option names: its renamed sampling options, the shared ones, num_ctx, and
    those it accepts and leaves to the model's config."""
    shared = sampling.schemas()
    properties: Schema = {name: shared[target] for name, target in ollama_schema._RENAMED.items()}
    properties["num_predict"] = {
        "oneOf": [shared["max_tokens"], {"type": "integer", "enum": [-1, -2]}],
        "description": "a positive number of tokens; -1 or -2: no limit",
    }
    properties.update({name: shared[name] for name in sorted(ollama_schema._SAMPLING)})
    properties["num_ctx"] = {"type": "integer", "minimum": 1}
    for name in sorted(ollama_schema.LOAD_TIME | ollama_schema._IGNORED):
        properties[name] = {"description": "accepted; the model's config decides"}
    return _object(properties, additionalProperties=True)


_KEEP_ALIVE = {
    "oneOf": [
        {"type": "string", "pattern": r"^(-.*|[0-9]+(\.[0-9]+)?|([0-9]+(\.[0-9]+)?(ms|s|m|h))+)$"},
        {"type": "number"},
    ],
    "description": "a duration (5m, 1h30m, 90s, 250ms) or seconds; negative: forever",
}
#: Ollama's names: surrounding blanks are dropped, so one character must be more.
_OLLAMA_NAME: Schema = {"type": "string", "pattern": _NOT_BLANK, "description": "a model's name"}
_FORMAT = {"oneOf": [{"type": "string", "enum": ["json"]}, _ANY_OBJECT]}
_OLLAMA_COMMON = {
    "model": _OLLAMA_NAME,
    "options": ref("OllamaOptions"),
    "stream": _BOOL,
    "keep_alive": _KEEP_ALIVE,
    "format": _FORMAT,
    "logprobs": _BOOL,
    "top_logprobs": _ints(0, 20),
}
_DETAILS = _object(
    {"format": {}, "family": {}, "parameter_size": {}, "quantization_level": {}},
    description="what the model file tells (null where it does not)",
)
_TAG = _object(
    {"name": _STRING, "model": _STRING, "size": _INT, "digest": _STRING, "details": _DETAILS},
    ("name", "model"),
)
OLLAMA: dict[str, Schema] = {
    "OllamaOptions": _ollama_options(),
    "GenerateRequest": _object(
        {
            **_OLLAMA_COMMON,
            "prompt": _STRING,
            "system": _STRING,
            "raw": _BOOL,
            "context": {**_IDS, "description": "a previous reply's context"},
        },
        ("model",),
        description="an empty prompt loads the model (keep_alive 0: unloads it)",
    ),
    "OllamaChatRequest": _object(
        {
            **_OLLAMA_COMMON,
            "messages": {"type": "array", "items": ref("ChatMessage")},
            "tools": _TOOLS,
        },
        ("model",),
    ),
    "OllamaReply": _object(
        {
            "model": _STRING,
            "created_at": _STRING,
            "response": _STRING,
            "message": _ANY_OBJECT,
            "done": _BOOL,
            "done_reason": _STRING,
            "context": _IDS,
        },
        ("model", "done"),
        description="one object, or with stream (the default) NDJSON lines of them",
    ),
    "EmbedRequest": _object(
        {
            "model": _OLLAMA_NAME,
            "input": {"oneOf": [_STRING, {"type": "array", "items": _STRING}]},
            "keep_alive": _KEEP_ALIVE,
            "dimensions": {"type": "integer", "minimum": 1},
            "truncate": _BOOL,
        },
        ("model",),
    ),
    "Embed": _object(
        {"model": _STRING, "embeddings": {"type": "array", "items": {"type": "array"}}},
        ("model", "embeddings"),
    ),
    "EmbeddingsRequest": _object(
        {"model": _OLLAMA_NAME, "prompt": _STRING, "keep_alive": _KEEP_ALIVE}, ("model",)
    ),
    "Embedding": _object(
        {"embedding": {"type": "array", "items": {"type": "number"}}}, ("embedding",)
    ),
    "Tags": _object({"models": {"type": "array", "items": _TAG}}, ("models",)),
    "Running": _object({"models": {"type": "array", "items": _TAG}}, ("models",)),
    "ShowRequest": _object({"model": _OLLAMA_NAME}, ("model",)),
    "Show": _object(
        {
            "modelfile": _STRING,
            "parameters": _STRING,
            "template": {"type": "string", "nullable": True},
            "details": _DETAILS,
            "model_info": _ANY_OBJECT,
            "capabilities": {"type": "array", "items": _STRING},
        },
        ("details",),
    ),
    "CopyRequest": _object(
        {"source": _OLLAMA_NAME, "destination": _OLLAMA_NAME}, ("source", "destination")
    ),
    "DeleteRequest": _object({"model": _OLLAMA_NAME}, ("model",)),
    "PullRequest": _object(
        {
            "model": {
                "type": "string",
                "minLength": 1,
                "description": "a path inside a --pull-from folder, or a model package's name",
            },
            "destination": _OLLAMA_NAME,
            "stream": _BOOL,
        },
        ("model",),
    ),
    "Progress": _object(
        {"status": _STRING, "digest": _STRING, "total": _INT, "completed": _INT, "error": _STRING},
        description="one object, or with stream (the default) NDJSON lines of them",
    ),
    "OllamaVersion": _object({"version": _STRING, "modelyard": _STRING}, ("version",)),
}

# ---- TGI (text-generation-inference) ------------------------------------------------------

_OPEN_UNIT = {"type": "number", "exclusiveMinimum": True, "minimum": 0, "exclusiveMaximum": True}
_TGI_PARAMETERS = _object(
    {
        "max_new_tokens": _ints(1, 2**31 - 1),
        "temperature": {"type": "number", "exclusiveMinimum": True, "minimum": 0},
        "top_k": _ints(1, 2**31 - 1),
        "top_p": {**_OPEN_UNIT, "maximum": 1},
        "typical_p": {**_OPEN_UNIT, "maximum": 1},
        "repetition_penalty": {
            "type": "number",
            "exclusiveMinimum": True,
            "minimum": 0,
            "maximum": 10,
        },
        "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2},
        "stop": {
            "type": "array",
            "items": _STRING,
            "maxItems": tgi_schema.MAX_STOP_SEQUENCES,
        },
        "seed": _ints(0, 2**63 - 1),
        "do_sample": _BOOL,
        "return_full_text": _BOOL,
        "details": _BOOL,
        "decoder_input_details": {
            **_BOOL,
            "description": "the prompt's tokens and logprobs (not when streaming)",
        },
        "truncate": _ints(1, 2**31 - 1),
        "best_of": {
            **_ints(1, tgi_schema.MAX_BEST_OF),
            "description": "above 1: sampling, no seed, no stream",
        },
        "top_n_tokens": _ints(0, tgi_schema.MAX_TOP_N_TOKENS),
        "grammar": _object(
            {
                "type": {"type": "string", "enum": ["json", "json_object", "json_schema", "regex"]},
                "value": {"description": "a JSON schema, or a regular expression"},
            },
            ("type", "value"),
        ),
    },
    additionalProperties=False,
)
_TGI_TOKEN = _object(
    {
        "id": _INT,
        "text": _STRING,
        "logprob": {"type": "number", "nullable": True},
        "special": _BOOL,
    }
)
TGI: dict[str, Schema] = {
    "TGIError": _object(
        {"error": _STRING, "error_type": _STRING},
        ("error", "error_type"),
        description="TGI's error shape: 422 validation, 424 generation, 429 overloaded",
    ),
    "TGIGenerateRequest": _object(
        {
            "inputs": {"type": "string", "minLength": 1},
            "parameters": _TGI_PARAMETERS,
            "stream": {**_BOOL, "description": "POST / only: stream as /generate_stream does"},
            "model": {**_NAME, "description": "modelyard's addition: which text model"},
        },
        ("inputs",),
    ),
    "TGIGenerated": _object(
        {
            "generated_text": _STRING,
            "details": {
                **_object({"finish_reason": _STRING, "generated_tokens": _INT}),
                "nullable": True,
            },
        },
        ("generated_text",),
    ),
    "TGIStreamEvent": _object(
        {
            "index": _INT,
            "token": _TGI_TOKEN,
            "generated_text": {"type": "string", "nullable": True},
            "details": {**_ANY_OBJECT, "nullable": True},
        },
        ("token",),
        description="one server-sent event's data",
    ),
    "TGITokenizeRequest": _object(
        {"inputs": {"type": "string", "minLength": 1}, "model": _NAME}, ("inputs",)
    ),
    "TGIEmbedRequest": _object(
        {
            "inputs": {"oneOf": [_STRING, {"type": "array", "items": _STRING}]},
            "normalize": _BOOL,
            "truncate": _BOOL,
            "model": _NAME,
        },
        ("inputs",),
    ),
    "TGIInfo": _object(
        {"model_id": _STRING, "max_input_tokens": _INT, "max_total_tokens": _INT},
        ("model_id",),
    ),
}

_NUMBER_OR_NULL: Schema = {"type": "number", "nullable": True}
_TENSORS: Schema = {"type": "array", "items": ref("TensorMetadata")}

#: The console's own route (fronts/console.py, core/overview.py).
CONSOLE: dict[str, Schema] = {
    "ConsoleModel": _object(
        {
            "name": _STRING,
            "state": _STRING,
            "reason": _STRING,
            "kind": {"type": "string", "enum": ["llm", "embedding", "tensor", "pipeline"]},
            "versions": {"type": "array", "items": _INT, "description": "on disk"},
            "loaded": {"type": "array", "items": _INT, "description": "loaded now"},
            "runtime": _STRING,
            "platform": _STRING,
            "max_batch_size": _INT,
            "reasons": {
                "type": "object",
                "additionalProperties": _STRING,
                "description": "setting -> why it has its value (the advisor's or the config's)",
            },
            "estimate_bytes": {"type": "integer", "minimum": 0},
            "keep_alive_s": _NUMBER_OR_NULL,
            "expires_at": _NUMBER_OR_NULL,
            "context_length": {"type": "integer", "nullable": True},
            "inflight": _INT,
            "queue_depth": _INT,
            "process_rss_bytes": {
                "type": "integer",
                "nullable": True,
                "description": "the resident memory of the model's own worker process; null "
                "when it runs inside the server",
            },
            "inputs": _TENSORS,
            "outputs": _TENSORS,
        },
        ("name", "state", "kind", "versions", "loaded", "reasons", "estimate_bytes"),
    ),
    "ConsoleModels": _object(
        {
            "control_mode": _STRING,
            "locked": {"type": "string", "description": "why the API may not load/unload"},
            "keep_alive_s": _NUMBER_OR_NULL,
            "rss_bytes": {"type": "integer", "nullable": True},
            "time": {"type": "number"},
            "models": {"type": "array", "items": ref("ConsoleModel")},
        },
        ("control_mode", "locked", "models"),
    ),
}

SCHEMAS: dict[str, Schema] = {**ERRORS, **KSERVE, **OPENAI, **OLLAMA, **TGI, **CONSOLE}
