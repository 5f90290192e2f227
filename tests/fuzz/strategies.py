"""Hypothesis strategies for the fronts' requests: mostly well-formed bodies with one or more
fields gone wrong (what finds bugs past the first check), and arbitrary JSON."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from modelyard import tensors

#: Any JSON value (small).
json_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
#: Integers near the edges that break readers: negatives, 2**31, 2**63, 2**64.
edgy_ints = st.sampled_from([0, 1, -1, 2**31 - 1, 2**31, 2**32, 2**63, 2**64, -(2**63) - 1, 262144])
names = st.sampled_from(
    [
        "addsub",
        "identity_string",
        "tiny",
        "tiny_embed",
        "nope",
        "",
        "../x",
        "**",
        "/etc/passwd",
        "a" * 300,
        "tiny:latest",
        "\u00b2",
        "%2e%2e",
    ]
)


def maybe(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`good` nine times in ten, else any JSON value: most bodies get past the first check."""
    return st.integers(0, 9).flatmap(lambda i: json_values if i == 0 else good)


def body(
    fields: dict[str, st.SearchStrategy[Any]],
    required: tuple[str, ...] = (),
    good: dict[str, Any] | None = None,
) -> st.SearchStrategy[Any]:
    """An object with `required` fields usually there and the rest sometimes; now and then
    not an object at all; and, given a `good` body, that body with one or two fields set from
    `fields` (so requests get past the checks to the model)."""
    wanted = {k: maybe(v) for k, v in fields.items() if k in required}
    optional = {k: maybe(v) for k, v in fields.items() if k not in required}
    objects = st.fixed_dictionaries({}, optional={**wanted, **optional})
    full = st.fixed_dictionaries(wanted, optional=optional)
    choices = [full, full, objects, json_values]
    if good is not None:
        changed = st.lists(st.sampled_from(sorted(fields)), max_size=2, unique=True).flatmap(
            lambda keys: st.fixed_dictionaries({k: maybe(fields[k]) for k in keys})
        )
        near = changed.map(lambda extra: {**good, **extra})
        choices += [near, near]
    return st.one_of(choices)


# ---- KServe v2 ------------------------------------------------------------------------------

shapes = st.lists(st.one_of(st.integers(-2, 6), edgy_ints), max_size=4)
tensor_input = st.fixed_dictionaries(
    {
        "name": maybe(st.sampled_from(["INPUT0", "INPUT1", "x", "nope"])),
        "datatype": maybe(st.sampled_from([*tensors.DATATYPES, "FP8", "fp32", ""])),
        "shape": maybe(shapes),
    },
    optional={
        "data": maybe(
            st.lists(
                st.one_of(
                    st.floats(), st.integers(-(2**65), 2**65), st.text(max_size=4), st.booleans()
                ),
                max_size=10,
            )
        ),
        "parameters": maybe(
            st.fixed_dictionaries(
                {}, optional={"binary_data_size": maybe(edgy_ints | st.integers(0, 64))}
            )
        ),
    },
)


@st.composite
def addsub_request(draw: st.DrawFn) -> Any:
    """A right request for addsub (two [n, 4] inputs), then maybe one part of it broken."""
    n = draw(st.integers(1, 3))
    values = st.lists(st.integers(-100, 100), min_size=4 * n, max_size=4 * n)
    request: dict[str, Any] = {
        "inputs": [
            {"name": "INPUT0", "datatype": "FP32", "shape": [n, 4], "data": draw(values)},
            {"name": "INPUT1", "datatype": "INT32", "shape": [n, 4], "data": draw(values)},
        ]
    }
    if draw(st.booleans()):
        item = request["inputs"][draw(st.integers(0, 1))]
        key = draw(st.sampled_from(["name", "datatype", "shape", "data", "parameters"]))
        item[key] = draw(json_values | edgy_ints | shapes)
    return request


infer_body = addsub_request() | body(
    {
        "inputs": st.lists(tensor_input, max_size=3),
        "outputs": st.lists(
            st.fixed_dictionaries(
                {"name": maybe(st.text(max_size=8))},
                optional={
                    "parameters": maybe(
                        st.fixed_dictionaries({}, optional={"binary_data": st.booleans()})
                    )
                },
            ),
            max_size=2,
        ),
        "parameters": st.fixed_dictionaries(
            {}, optional={"binary_data_output": maybe(st.booleans())}
        ),
        "id": st.text(max_size=8),
    },
    ("inputs",),
)

# ---- OpenAI and Ollama ----------------------------------------------------------------------

messages = st.lists(
    st.fixed_dictionaries(
        {"role": maybe(st.sampled_from(["user", "system", "assistant", "tool"]))},
        optional={
            "content": maybe(
                st.text(max_size=30)
                | st.lists(
                    st.fixed_dictionaries(
                        {"type": maybe(st.just("text")), "text": maybe(st.text(max_size=10))}
                    ),
                    max_size=2,
                )
            )
        },
    ),
    max_size=3,
)
token_ids = st.lists(st.one_of(st.integers(0, 300), edgy_ints), max_size=6)
small = st.integers(-2, 8)
sampling = {
    "max_tokens": small,
    "temperature": st.floats(-1, 3),
    "top_p": st.floats(-0.5, 1.5),
    "top_k": st.integers(-2, 50),
    "min_p": st.floats(-0.5, 1.5),
    "seed": edgy_ints,
    "stop": st.lists(st.text(max_size=3), max_size=3) | st.text(max_size=3),
    "stop_token_ids": token_ids,
    "logit_bias": st.dictionaries(
        st.sampled_from(["1", "2", "-1", "x", "\u00b2", "99999999999"]),
        st.floats(-200, 200),
        max_size=3,
    ),
    "presence_penalty": st.floats(-3, 3),
    "repetition_penalty": st.floats(-1, 11),
    "min_tokens": small,
}
tools_list = st.lists(
    st.fixed_dictionaries(
        {
            "type": maybe(st.just("function")),
            "function": maybe(
                st.fixed_dictionaries(
                    {
                        "name": maybe(st.sampled_from(["f", "g", "bad name"])),
                        "parameters": maybe(
                            st.just({"type": "object", "properties": {"x": {"type": "integer"}}})
                        ),
                    }
                )
            ),
        }
    ),
    max_size=2,
)
response_format = st.sampled_from(
    [
        {"type": "text"},
        {"type": "json_object"},
        {"type": "json_schema", "json_schema": {"schema": {"type": "object"}}},
        {"type": "json_schema"},
        {"type": "xml"},
    ]
)
openai_common = {
    "model": names,
    **sampling,
    "n": st.integers(0, 4),
    "stream": st.booleans(),
    "stream_options": st.fixed_dictionaries({}, optional={"include_usage": st.booleans()}),
    "response_format": response_format,
    "prompt_logprobs": st.integers(-1, 3),
}
chat_body = body(
    {
        **openai_common,
        "messages": messages,
        "logprobs": st.booleans(),
        "top_logprobs": st.integers(-1, 25),
        "tools": tools_list,
        "tool_choice": st.sampled_from(
            ["auto", "none", "required", {"type": "function", "function": {"name": "f"}}]
        ),
    },
    ("model", "messages"),
    {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
)
completion_body = body(
    {
        **openai_common,
        "prompt": st.text(max_size=30) | token_ids | st.lists(token_ids, max_size=2),
        "echo": st.booleans(),
        "logprobs": st.integers(-1, 25),
    },
    ("model", "prompt"),
    {"model": "tiny", "prompt": "hi", "max_tokens": 4},
)
embedding_body = body(
    {
        "model": names,
        "input": st.text(max_size=30)
        | st.lists(st.text(max_size=10), max_size=3)
        | token_ids
        | st.lists(token_ids, max_size=2),
        "encoding_format": st.sampled_from(["float", "base64", "hex"]),
        "dimensions": st.integers(-1, 100),
    },
    ("model", "input"),
    {"model": "tiny_embed", "input": "hi"},
)
tokenize_body = body(
    {
        "model": names,
        "prompt": st.text(max_size=20),
        "messages": messages,
        "add_special_tokens": st.booleans(),
        "tokens": token_ids,
    },
    (),
)
ollama_options = st.fixed_dictionaries(
    {},
    optional={
        **{k: v for k, v in sampling.items() if k not in ("max_tokens", "repetition_penalty")},
        "num_predict": small,
        "num_ctx": st.integers(-1, 4096),
        "repeat_penalty": st.floats(-1, 3),
        "num_thread": st.integers(-1, 8),
        "mirostat": st.integers(0, 2),
    },
)
ollama_common = {
    "model": names,
    "options": ollama_options,
    "stream": st.booleans(),
    "keep_alive": st.sampled_from(["5m", "0", 0, -1, "1h30m", "x", "\u00b2m", "-5m", 1e300]),
    "format": st.sampled_from(["json", "", {"type": "object"}, "xml"]),
    "logprobs": st.booleans(),
    "top_logprobs": st.integers(-1, 25),
}
generate_body = body(
    {
        **ollama_common,
        "prompt": st.text(max_size=30),
        "system": st.text(max_size=10),
        "raw": st.booleans(),
        "context": token_ids,
    },
    ("model",),
    {"model": "tiny", "prompt": "hi", "options": {"num_predict": 4}, "stream": False},
)
ollama_chat_body = body(
    {**ollama_common, "messages": messages, "tools": tools_list},
    ("model",),
    {
        "model": "tiny",
        "messages": [{"role": "user", "content": "hi"}],
        "options": {"num_predict": 4},
    },
)
embed_body = body(
    {
        "model": names,
        "input": st.text(max_size=20) | st.lists(st.text(max_size=10), max_size=3),
        "prompt": st.text(max_size=10),
        "dimensions": st.integers(-1, 100),
        "truncate": st.booleans(),
    },
    ("model",),
    {"model": "tiny_embed", "input": "hi", "prompt": "hi"},
)
show_body = body({"model": names, "name": names}, ("model",))
