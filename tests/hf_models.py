"""A tiny Hugging Face causal LM the tests build themselves: a 2-layer Llama (width 32) with
random weights and a byte-level BPE tokenizer trained here on two sentences, with a chat
template, written by `save_pretrained` (no downloads). The text is gibberish, but greedy
decoding is deterministic and the folder loads in well under a second.

transformers, torch and tokenizers are imported inside: a test module importing this one
skips (`pytest.importorskip`) where they are not installed.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

#: The model's max_position_embeddings: the transformers runtime's default n_ctx for it.
TINY_CONTEXT = 256
#: The chat template: `<s>role: content` per message, then `assistant:`.
TINY_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


def build_tiny_llm(folder: Path, context: int = TINY_CONTEXT) -> Path:
    """The model and its tokenizer in `folder`, as `save_pretrained` writes them."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    transformers: Any = importlib.import_module("transformers")  # its stubs are partial

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = ["The quick brown fox jumps over the lazy dog.", "Hello, world! How are you?"]
    tokenizer.train_from_iterator(corpus * 20, trainer)
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    fast.chat_template = TINY_TEMPLATE
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=len(fast),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    model = transformers.LlamaForCausalLM(config)
    model.generation_config = transformers.GenerationConfig(
        bos_token_id=1, eos_token_id=2, pad_token_id=0
    )
    model.save_pretrained(folder)
    return folder


def library_greedy(folder: Path, prompt: str, n: int) -> str:
    """What transformers' own `generate` writes greedily after `prompt` (the reference the
    served text must equal)."""
    transformers: Any = importlib.import_module("transformers")
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    out = model.generate(ids, max_new_tokens=n, do_sample=False)
    return str(tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True))
