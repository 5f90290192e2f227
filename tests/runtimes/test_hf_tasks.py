"""Hugging Face folders for non-generative tasks: a tiny BERT text classifier, token classifier
and bare encoder built from configs with random weights and a WordPiece tokenizer trained here
(no downloads), saved with `save_pretrained` into a repository as bare folders, found by the
scanner, served by the real server and judged against transformers' own pipelines through
tritonclient (HTTP and gRPC) and the openai client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeAlias

import httpx
import numpy as np
import openai
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from modelyard.errors import ModelLoadError
from modelyard.repository.scan import scan
from modelyard.runtimes.hf_export import exported_graph
from modelyard.runtimes.sentence import pool, read_settings
from tests.server_process import ServerProcess

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("onnxruntime")


pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

Client: TypeAlias = httpclient.InferenceServerClient | grpcclient.InferenceServerClient
TEXTS = ["the quick brown fox", "jumps over the lazy dog near the river bank", "hello"]
LABELS = {0: "NEGATIVE", 1: "NEUTRAL", 2: "POSITIVE"}
TAGS = {0: "B-PER", 1: "I-PER", 2: "B-LOC"}  # no O: every word is an entity


def tokenizer() -> Any:
    """A WordPiece tokenizer with BERT's special tokens and [CLS] .. [SEP] around each text."""
    from tokenizers import Tokenizer
    from tokenizers.implementations.bert_wordpiece import BertWordPieceTokenizer

    words = BertWordPieceTokenizer(lowercase=True)
    corpus = ["The quick brown fox jumps over the lazy dog.", "Hello river bank, near here."]
    words.train_from_iterator(iter(corpus * 20), vocab_size=120, show_progress=False)
    trained = Tokenizer.from_str(words.to_str())
    return transformers.BertTokenizerFast(tokenizer_object=trained)


def bert_config(vocab: int, **extra: Any) -> Any:
    return transformers.BertConfig(
        vocab_size=vocab,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        **extra,
    )


def build_repository(repo: Path) -> Path:
    tokens = tokenizer()
    vocab = len(tokens)
    torch.manual_seed(0)
    models = {
        "sentiment": transformers.BertForSequenceClassification(
            bert_config(vocab, id2label=LABELS, label2id={v: k for k, v in LABELS.items()})
        ),
        "tagger": transformers.BertForTokenClassification(
            bert_config(vocab, id2label=TAGS, label2id={v: k for k, v in TAGS.items()})
        ),
        "encoder": transformers.BertModel(bert_config(vocab), add_pooling_layer=False),
    }
    for name, model in models.items():
        model.save_pretrained(repo / name)
        tokens.save_pretrained(repo / name)
    return repo


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = build_repository(tmp_path_factory.mktemp("hf-tasks"))
    exported_graph(folder / "encoder", folder / "encoder" / "model.safetensors")  # once, cached
    return folder


@pytest.fixture(scope="module")
def server(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("hf-tasks-logs") / "server.log"
    process = ServerProcess(str(repo), log_path=log)
    try:
        yield process.start(timeout=240)  # torch and transformers load slowly on a busy machine
    finally:
        process.stop()


@pytest.fixture(params=["http", "grpc"])
def client(request: pytest.FixtureRequest, server: ServerProcess) -> Iterator[Client]:
    if request.param == "http":
        http = httpclient.InferenceServerClient(server.http_addr)
        yield http
        http.close()
    else:
        grpc = grpcclient.InferenceServerClient(server.grpc_addr)
        yield grpc
        grpc.close()


def infer(client: Client, model: str, texts: list[str], datatype: str = "BYTES") -> Any:
    module = httpclient if isinstance(client, httpclient.InferenceServerClient) else grpcclient
    tensor = module.InferInput("text_input", [len(texts)], datatype)
    if datatype == "BYTES":
        tensor.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=object))
    else:
        tensor.set_data_from_numpy(np.zeros(len(texts), dtype=np.float32))
    return client.infer(model, [tensor])


def pipeline(task: str, folder: Path) -> Any:
    return transformers.pipeline(task, model=str(folder), tokenizer=str(folder), device="cpu")


def test_the_scanner_picks_the_runtime_from_the_architecture(repo: Path) -> None:
    found = scan([repo])
    runtimes = {name: source.config.runtime for name, source in found.items()}
    assert runtimes == {
        "sentiment": "hf_classifier",
        "tagger": "hf_classifier",
        "encoder": "sentence",
    }
    assert "BertForTokenClassification" in found["tagger"].config.reasons["runtime"]


def test_metadata(server: ServerProcess) -> None:
    meta = httpx.get(f"{server.url}/v2/models/sentiment").json()
    assert meta["platform"] == "hf_classifier"
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["outputs"]] == [
        ("label", "BYTES", [-1]),
        ("score", "FP32", [-1]),
        ("scores", "FP32", [-1, 3]),
    ]
    encoder = httpx.get(f"{server.url}/v2/models/encoder").json()
    assert encoder["outputs"] == [{"name": "embedding", "datatype": "FP32", "shape": [-1, 32]}]


def test_text_classification_equals_the_pipeline(client: Client, repo: Path) -> None:
    result = infer(client, "sentiment", TEXTS)
    expected = pipeline("text-classification", repo / "sentiment")(TEXTS, top_k=None)
    scores = result.as_numpy("scores")
    for row, answer in enumerate(expected):
        by_label = {a["label"]: a["score"] for a in answer}
        np.testing.assert_allclose(
            scores[row], [by_label[LABELS[i]] for i in range(3)], rtol=1e-4, atol=1e-6
        )
        assert result.as_numpy("label")[row].decode() == answer[0]["label"]
        assert result.as_numpy("score")[row] == pytest.approx(answer[0]["score"], rel=1e-4)


def test_token_classification_equals_the_pipeline(client: Client, repo: Path) -> None:
    result = infer(client, "tagger", TEXTS)
    expected = pipeline("token-classification", repo / "tagger")(TEXTS)
    assert sum(len(answer) for answer in expected) > len(TEXTS)  # several words per text
    for row, answer in enumerate(expected):
        got = json.loads(result.as_numpy("entities")[row])
        assert [(e["entity"], e["index"], e["word"], e["start"], e["end"]) for e in got] == [
            (e["entity"], e["index"], e["word"], e["start"], e["end"]) for e in answer
        ]
        np.testing.assert_allclose(
            [e["score"] for e in got], [float(e["score"]) for e in answer], rtol=1e-4
        )


def _mean_pooled(folder: Path, texts: list[str]) -> np.ndarray:
    """transformers' feature-extraction pipeline's token vectors, mean-pooled and normalised."""
    features = pipeline("feature-extraction", folder)(texts)
    vectors = np.array([np.array(f[0]).mean(axis=0) for f in features])
    normalised: np.ndarray = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return normalised


def test_embeddings_equal_the_pipeline_over_kserve_and_openai(
    client: Client, server: ServerProcess, repo: Path
) -> None:
    expected = _mean_pooled(repo / "encoder", TEXTS)
    kserve = infer(client, "encoder", TEXTS).as_numpy("embedding")
    np.testing.assert_allclose(kserve, expected, atol=1e-5)
    openai_client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    answer = openai_client.embeddings.create(model="encoder", input=TEXTS)
    np.testing.assert_allclose([d.embedding for d in answer.data], expected, atol=1e-5)
    assert answer.usage.prompt_tokens >= len(TEXTS) * 3  # [CLS] text [SEP]
    ids = transformers.AutoTokenizer.from_pretrained(str(repo / "encoder"))(TEXTS[1])["input_ids"]
    by_ids = openai_client.embeddings.create(model="encoder", input=[ids])
    np.testing.assert_allclose(by_ids.data[0].embedding, expected[1], atol=1e-5)


def test_bad_input_is_a_client_error_and_the_server_goes_on(client: Client) -> None:
    grpc = isinstance(client, grpcclient.InferenceServerClient)
    for model in ("sentiment", "tagger", "encoder"):
        with pytest.raises(InferenceServerException) as wrong_type:
            infer(client, model, TEXTS, "FP32")
        assert wrong_type.value.status() == ("StatusCode.INVALID_ARGUMENT" if grpc else "400")
    assert infer(client, "sentiment", ["still here"]).as_numpy("label").shape == (1,)


def test_text_that_is_not_utf8_is_a_400(server: ServerProcess) -> None:
    tensor = {"name": "text_input", "shape": [1], "datatype": "BYTES"}
    header = json.dumps({"inputs": [tensor | {"parameters": {"binary_data_size": 6}}]})
    payload = header.encode() + (2).to_bytes(4, "little") + b"\xff\xfe"
    for model in ("sentiment", "encoder"):
        answer = httpx.post(
            f"{server.url}/v2/models/{model}/infer",
            content=payload,
            headers={"Inference-Header-Content-Length": str(len(header))},
        )
        assert answer.status_code == 400, answer.text
        assert "UTF-8" in answer.json()["error"]


def test_embeddings_from_a_classifier_are_refused(server: ServerProcess) -> None:
    answer = httpx.post(
        f"{server.url}/v1/embeddings", json={"model": "sentiment", "input": ["a text"]}
    )
    assert 400 <= answer.status_code < 500


# ---- the pieces, without a server -------------------------------------------------------------


def test_pooling_keeps_only_the_tokens_the_mask_keeps() -> None:
    hidden = np.array([[[1.0, 2.0], [3.0, -4.0], [100.0, 100.0]]], dtype=np.float32)
    mask = np.array([[1, 1, 0]])
    np.testing.assert_allclose(pool(hidden, mask, "mean"), [[2.0, -1.0]])
    np.testing.assert_allclose(pool(hidden, mask, "max"), [[3.0, 2.0]])
    np.testing.assert_allclose(pool(hidden, mask, "cls"), [[1.0, 2.0]])


def test_parameters_override_the_folders_settings(tmp_path: Path) -> None:
    (tmp_path / "modules.json").write_text('[{"type": "sentence_transformers.models.Pooling"}]')
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text('{"pooling_mode_max_tokens": true}')
    found = read_settings(tmp_path, {})
    assert (found.pooling, found.normalize, found.max_seq_length) == ("max", False, 512)
    chosen = read_settings(tmp_path, {"pooling": "CLS", "normalize": "true", "max_seq_length": "8"})
    assert (chosen.pooling, chosen.normalize, chosen.max_seq_length) == ("cls", True, 8)
    with pytest.raises(ModelLoadError, match="pooling must be one of"):
        read_settings(tmp_path, {"pooling": "sum"})


def test_a_shipped_graph_is_used_and_a_failed_export_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    shipped = tmp_path / "shipped"
    (shipped / "onnx").mkdir(parents=True)
    (shipped / "onnx" / "model.onnx").write_bytes(b"graph")
    assert exported_graph(shipped, shipped / "model.safetensors") == shipped / "onnx" / "model.onnx"
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    (broken / "model.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(ModelLoadError, match="exporting one failed") as error:
        exported_graph(broken, broken / "model.safetensors")
    assert "modelyard[transformers]" in str(error.value)
    assert not list((tmp_path / "cache").rglob("*.partial"))
