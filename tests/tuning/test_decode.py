"""`modelyard tune` on a text generator: the real CLI serves the tiny Transformers model
(tests/hf_models.py) with the advisor's settings, measures its decode tokens/s at 1 and 8
streams through the OpenAI front, caches the figures, and `modelyard advise` shows them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hf_models import build_tiny_llm

pytest.importorskip("torch")
pytest.importorskip("transformers")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _cli(*args: str, cache: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "modelyard", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "MODELYARD_CACHE": str(cache)},
        timeout=540,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


def test_tune_measures_a_text_generator_and_advise_shows_it(tmp_path: Path) -> None:
    repo, cache = tmp_path / "repo", tmp_path / "cache"
    build_tiny_llm(repo / "tiny")
    [measured] = json.loads(_cli("tune", str(repo), "--tokens", "8", "--json", cache=cache))
    assert measured["name"] == "tiny" and measured["runtime"] == "transformers"
    assert set(measured["tok_s"]) == {"1", "8"} and all(v > 0 for v in measured["tok_s"].values())
    assert measured["tokens"] == 8 and Path(measured["cache"]).is_file()
    advice = json.loads(_cli("advise", str(repo), "--json", cache=cache))
    [model] = advice["models"]
    assert model["decode"]["tok_s"] == measured["tok_s"]
    assert "tok/s at 8 streams (transformers" in _cli("advise", str(repo / "tiny"), cache=cache)
