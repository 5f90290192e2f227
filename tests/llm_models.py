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

_WORDS = (  # noqa: SIM905 - a paragraph reads better than a list of 110 strings
    "the of and to in is that it was for on are as with his they at be this from have or "
    "by one had not but what all were when we there can an your which their said if do will "
    "each about how up out them then she many some so these would other into has more her two "
    "like him see time could no make than first been its who now people my made over did down "
    "only way find use may water long little very after words called just where most know "
    "hello world model yard red blue green yellow colors primary json true false null"
).split()

SPACE = "\u2581"  # SentencePiece's word boundary marker


def _vocabulary() -> tuple[list[str], list[float], list[int]]:
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
) -> Path:
    """Write the tiny model to `path` (a .gguf file) and return the path."""
    import gguf

    tokens, scores, types = _vocabulary()
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
    for name, array in _weights(len(tokens), n_embd, n_layer, n_ff, n_head, seed):
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


def llm_repository(folder: Path) -> Path:
    """A repository with the tiny model three ways: a bare file with its own template (`tiny`),
    a folder with model.yaml and few slots (`tiny_small`), and an embedding model
    (`tiny_embed`)."""
    folder.mkdir(parents=True, exist_ok=True)
    tiny_gguf(folder / "tiny.gguf")
    small = folder / "tiny_small"
    small.mkdir(exist_ok=True)
    tiny_gguf(small / "model.gguf")
    (small / "model.yaml").write_text(
        "runtime: llamacpp\nparameters:\n  n_ctx: 512\n  n_seq_max: 2\n  max_queue: 2\n"
        "  prefix_cache: false\n"
    )
    embed = folder / "tiny_embed"
    embed.mkdir(exist_ok=True)
    tiny_gguf(embed / "model.gguf", seed=1)
    (embed / "model.yaml").write_text(
        "runtime: llamacpp\nparameters:\n  embedding: true\n  pooling: mean\n"
    )
    return folder
