"""A tiny GGUF language model the tests write themselves with the `gguf` package.

llama architecture, 2 layers, width 64, a ~600-token SentencePiece-style vocabulary with byte
fallback and a ChatML template embedded. Random weights: the text is gibberish, but it is
deterministic at temperature 0 and the file (~0.7 MB) loads in milliseconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

#: A ChatML template that writes tools and calls itself, as Hermes-style templates (Qwen 2.5,
#: Hermes 3) do: the tools in the system turn, calls as <tool_call> blocks, tool results in a
#: user turn as <tool_response> blocks.
TOOLS_CHATML = r"""
{%- if tools %}
{{- '<|im_start|>system\n' }}
{%- if messages[0].role == 'system' %}{{- messages[0].content + '\n\n' }}{%- endif %}
{{- '# Tools\n\nFunctions, one JSON signature per line:\n<tools>' }}
{%- for tool in tools %}{{- '\n' + (tool | tojson) }}{%- endfor %}
{{- '\n</tools>\n\nCall one as JSON within tags:\n<tool_call>\n' }}
{{- '{"name": <function name>, "arguments": <arguments object>}\n</tool_call><|im_end|>\n' }}
{%- elif messages[0].role == 'system' %}
{{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
{%- endif %}
{%- for message in messages %}
{%- if message.role == 'tool' %}
{{- '<|im_start|>user\n<tool_response>\n' + message.content + '\n</tool_response><|im_end|>\n' }}
{%- elif message.role == 'assistant' and message.tool_calls %}
{{- '<|im_start|>assistant\n' + message.content }}
{%- for call in message.tool_calls %}
{%- set body = {'name': call.function.name, 'arguments': call.function.arguments} %}
{{- '\n<tool_call>\n' + (body | tojson) + '\n</tool_call>' }}
{%- endfor %}
{{- '<|im_end|>\n' }}
{%- elif message.role != 'system' or not loop.first %}
{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' }}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}
"""

_WORDS = (  # noqa: SIM905 - a paragraph reads better than a list of 110 strings
    "the of and to in is that it was for on are as with his they at be this from have or "
    "by one had not but what all were when we there can an your which their said if do will "
    "each about how up out them then she many some so these would other into has more her two "
    "like him see time could no make than first been its who now people my made over did down "
    "only way find use may water long little very after words called just where most know "
    "hello world model yard red blue green yellow colors primary json true false null"
).split()

SPACE = "\u2581"  # SentencePiece's word boundary marker
TOOL_TOKENS = ("<tool_call>", "</tool_call>")


def _vocabulary(added: tuple[str, ...] = ()) -> tuple[list[str], list[float], list[int]]:
    import gguf

    tokens = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    types = [gguf.TokenType.UNKNOWN] + [gguf.TokenType.CONTROL] * 4
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [gguf.TokenType.BYTE] * 256
    pieces: list[str] = []
    for char in [SPACE, *(chr(c) for c in range(33, 127))]:
        pieces.append(char)
    for word in _WORDS:
        marked = SPACE + word
        for end in range(2, len(marked) + 1):
            if marked[:end] not in pieces:
                pieces.append(marked[:end])
    tokens += pieces
    types += [gguf.TokenType.NORMAL] * len(pieces)
    # SentencePiece merges by score: longer pieces win.
    scores = [0.0] * (len(tokens) - len(pieces)) + [float(len(p)) - 10.0 for p in pieces]
    tokens += added  # whole-word tokens as models add them (Qwen's <tool_call>)
    types += [gguf.TokenType.USER_DEFINED] * len(added)
    scores += [0.0] * len(added)
    return tokens, scores, [int(t) for t in types]


def tiny_gguf(
    path: Path,
    *,
    seed: int = 0,
    chat_template: str | None = CHATML,
    n_embd: int = 64,
    n_layer: int = 2,
    n_ff: int = 128,
    n_head: int = 4,
    n_ctx: int = 4096,
    tool_tokens: bool = False,
) -> Path:
    """Write the tiny model to `path` (a .gguf file) and return the path. `tool_tokens`: a
    model that likes calling tools — `<tool_call>` and `</tool_call>` are tokens of their
    own (as in Qwen's vocabulary) and its output layer favours `<tool_call>` after a line
    break, such as the one that opens the assistant's turn."""
    import gguf

    tokens, scores, types = _vocabulary(TOOL_TOKENS if tool_tokens else ())
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama-test")
    writer.add_context_length(n_ctx)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head // 2)
    writer.add_rope_dimension_count(n_embd // n_head)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_eot_token_id(4)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    weights = dict(_weights(len(tokens), n_embd, n_layer, n_ff, n_head, seed))
    if tool_tokens:
        _favour(weights, tokens.index(TOOL_TOKENS[0]), after=tokens.index("<0x0A>"))
    for name, array in weights.items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _weights(
    n_vocab: int, n_embd: int, n_layer: int, n_ff: int, n_head: int, seed: int
) -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    n_kv = n_embd // 2  # head_count_kv = n_head // 2

    def normal(*shape: int, scale: float = 0.2) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    out = [
        ("token_embd.weight", normal(n_vocab, n_embd, scale=1.0)),
        ("output_norm.weight", np.ones(n_embd, np.float32)),
        ("output.weight", normal(n_vocab, n_embd, scale=0.5)),
    ]
    for i in range(n_layer):
        out += [
            (f"blk.{i}.attn_norm.weight", np.ones(n_embd, np.float32)),
            (f"blk.{i}.attn_q.weight", normal(n_embd, n_embd)),
            (f"blk.{i}.attn_k.weight", normal(n_kv, n_embd)),
            (f"blk.{i}.attn_v.weight", normal(n_kv, n_embd)),
            (f"blk.{i}.attn_output.weight", normal(n_embd, n_embd)),
            (f"blk.{i}.ffn_norm.weight", np.ones(n_embd, np.float32)),
            (f"blk.{i}.ffn_gate.weight", normal(n_ff, n_embd)),
            (f"blk.{i}.ffn_up.weight", normal(n_ff, n_embd)),
            (f"blk.{i}.ffn_down.weight", normal(n_embd, n_ff)),
        ]
    return out


def _favour(weights: dict[str, np.ndarray], token: int, after: int) -> None:
    """Make `token` the likeliest next token after `after` (its output row points along
    `after`'s embedding, which dominates the last hidden state)."""
    embedding = weights["token_embd.weight"][after]
    weights["output.weight"][token] = 20.0 * embedding / np.linalg.norm(embedding)


def llm_repository(folder: Path) -> Path:
    """A repository with the tiny model five ways: a bare file with its own template (`tiny`),
    one whose template handles tools (`tiny_tools`), one without a template (`tiny_bare`), a
    folder with model.yaml and few slots (`tiny_small`), and an embedding model
    (`tiny_embed`)."""
    folder.mkdir(parents=True, exist_ok=True)
    tiny_gguf(folder / "tiny.gguf")
    tiny_gguf(folder / "tiny_tools.gguf", chat_template=TOOLS_CHATML, tool_tokens=True)
    tiny_gguf(folder / "tiny_bare.gguf", chat_template=None)
    small = folder / "tiny_small"
    small.mkdir(exist_ok=True)
    tiny_gguf(small / "model.gguf")
    (small / "model.yaml").write_text(
        "runtime: llamacpp\nparameters:\n  n_ctx: 512\n  n_seq_max: 2\n  max_queue: 2\n"
        "  prefix_cache: false\n"
    )
    tiny_embedding(folder / "tiny_embed")
    return folder


def tiny_embedding(folder: Path) -> Path:
    """The tiny model (another seed) as an embedding model: a folder with model.yaml."""
    folder.mkdir(parents=True, exist_ok=True)
    tiny_gguf(folder / "model.gguf", seed=1)
    (folder / "model.yaml").write_text(
        "runtime: llamacpp\nparameters:\n  embedding: true\n  pooling: mean\n"
    )
    return folder
