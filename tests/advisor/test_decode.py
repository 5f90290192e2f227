"""Measured decode speed in the advisor: the cache `modelyard tune` writes for text
generators, one model held as GGUF and as a Hugging Face folder set side by side with the
measured verdict and its reason, and the transformers runtime's KV cache in the estimate."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from modelyard.advisor.advise import advise
from modelyard.advisor.artifact import ArtifactInfo, LLMShape
from modelyard.advisor.decode import (
    DecodeFigures,
    Measured,
    compare,
    decode_path,
    family,
    load_decode,
    save_decode,
)
from modelyard.advisor.hardware import probe
from modelyard.advisor.memory import estimate_for_parameters, estimate_memory
from modelyard.advisor.render import Advice, render, schema, to_json

MIB = 2**20


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("MODELYARD_CACHE", str(folder))
    return folder


def _shape() -> LLMShape:  # Gemma 3 270M's: 18 layers, 1 KV head of 256
    return LLMShape(18, [1] * 18, 256, 256, 262144, 32768, 640)


def _gguf(path: Path) -> ArtifactInfo:
    return ArtifactInfo(
        path,
        "gguf",
        task="text-generation",
        weight_bytes=240 * MIB,
        parameters=268_000_000,
        quantization="Q4_K_M",
        architecture="gemma3",
        llm=_shape(),
    )


def _hf(path: Path) -> ArtifactInfo:
    return ArtifactInfo(
        path,
        "hf",
        container="safetensors",
        task="text-generation",
        weight_bytes=1024 * MIB,
        parameters=268_098_176,
        quantization="F32",
        architecture="Gemma3ForCausalLM",
        context_length=32768,
        llm=_shape(),
    )


def _figures(runtime: str, one: float, eight: float) -> DecodeFigures:
    return DecodeFigures(runtime, {1: one, 8: eight}, {1: 0.1, 8: 0.3}, 32, {}, "2026-12-02")


def test_one_family_for_both_spellings(tmp_path: Path) -> None:
    assert family(_gguf(tmp_path)) == family(_hf(tmp_path)) == "gemma3"
    text = ArtifactInfo(tmp_path, "hf", architecture="gemma3_text")
    assert family(text) == "gemma3"


def test_figures_round_trip_through_the_cache(tmp_path: Path) -> None:
    artifact = tmp_path / "m.gguf"
    artifact.write_bytes(b"GGUF")
    hw = probe()
    assert load_decode(artifact, hw) is None
    figures = _figures("llamacpp", 60.0, 130.0)
    path = save_decode(artifact, figures, hw)
    assert load_decode(artifact, hw) == figures
    artifact.write_bytes(b"GGUF, another model")  # a changed file is measured again
    assert load_decode(artifact, hw) is None
    path.write_text("{broken")
    assert decode_path(artifact, hw) != path


def test_a_hugging_face_folder_and_its_config_share_one_entry(tmp_path: Path) -> None:
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"x" * 16)
    hw = probe()
    save_decode(folder / "config.json", _figures("transformers", 8.0, 30.0), hw)
    assert load_decode(folder, hw) is not None  # `advise FOLDER` finds what `tune REPO` saved


def test_gguf_and_transformers_side_by_side_measured(tmp_path: Path) -> None:
    gguf = Measured("gemma", _gguf(tmp_path / "gemma.gguf"), _figures("llamacpp", 66.0, 135.0))
    hf = Measured("gemma_hf", _hf(tmp_path / "gemma_hf"), _figures("transformers", 8.0, 30.0))
    other = Measured("other", ArtifactInfo(tmp_path, "hf", task="text-generation"), None)
    [pair] = compare([gguf, hf, other])
    assert pair.verdicts() == [
        "1 stream: gemma (llamacpp) 66 tok/s, 8.2x gemma_hf (transformers, 8)",
        "8 streams: gemma (llamacpp) 135 tok/s, 4.5x gemma_hf (transformers, 30)",
    ]
    assert "240 MiB of Q4_K_M weights" in pair.why() and "1 GiB of F32" in pair.why()
    pair.hf.figures = None
    assert pair.verdicts() == [] and "run `modelyard tune` on gemma_hf" in pair.why()


def test_a_different_size_is_another_model(tmp_path: Path) -> None:
    big = _hf(tmp_path)
    big.parameters = 1_000_000_000
    assert compare([Measured("a", _gguf(tmp_path), None), Measured("b", big, None)]) == []


def test_advise_renders_the_comparison_and_its_json_fits_the_schema(tmp_path: Path) -> None:
    hw = probe()
    gguf, hf = advise(_gguf(tmp_path / "g.gguf"), hw), advise(_hf(tmp_path / "h"), hw)
    advice = [
        Advice("gemma", gguf, decode=_figures("llamacpp", 66, 135)),
        Advice("gemma_hf", hf, decode=_figures("transformers", 8, 30)),
    ]
    text = render(hw, advice)
    assert "gemma3 (268M parameters): gemma (GGUF) and gemma_hf (Hugging Face)" in text
    assert "measured 66 tok/s at 1 stream, 135 tok/s at 8 streams (llamacpp" in text
    assert "8.2x gemma_hf" in text
    document = json.loads(json.dumps(to_json(hw, advice)))
    jsonschema.validate(document, schema())
    assert document["comparisons"][0]["gguf"] == "gemma"
    assert document["models"][1]["decode"]["tok_s"] == {"1": 8, "8": 30}


def test_the_transformers_kv_cache_is_its_runtimes(tmp_path: Path) -> None:
    """8 slots of min(2048, trained) cells each, fp32 keys and values in every layer:
    Gemma 3 270M's 36 KiB per token (fp32), 576 MiB at the defaults."""
    info = _hf(tmp_path)
    estimate = estimate_memory(info, parallel=8)
    assert (estimate.context, estimate.parallel, estimate.cells) == (2048, 8, 16384)
    assert estimate.kv_cache == 576 * MIB
    rec = advise(info, probe(), memory=64 * 2**30)
    assert rec.memory.kv_cache == 576 * MIB
    named = estimate_for_parameters(info, {"n_ctx": "1024", "n_seq_max": "2", "dtype": "bfloat16"})
    assert named.kv_cache == 576 * MIB // 8 // 2  # an eighth of the cells, half the bytes
