"""Measured decode speed of text generators, and GGUF against Transformers for one model.

`modelyard tune` measures a text generator (tuning/decode.py: a real server with the
advisor's settings, streamed completions at 1 and 8 streams) and caches the figures here,
per artifact and machine, beside the tuned picks: one JSON file under `cache_dir()/tuned/`.
The key is the artifact's path, size and modification time (not a hash: a GGUF may be
gigabytes, and advising must stay instant), this machine's fingerprint and modelyard's
version.

`compare` pairs the text generators of one `advise` run that hold the same model two ways —
one GGUF (llama.cpp) and one Hugging Face folder (transformers), of the same architecture
family and within a fifth of each other's parameters — and, when both were measured, says
which serves it faster here, by how much at each stream count, and why: the bytes of weights
each reads per decode step, which bounds a CPU's tokens/s. Nothing here measures.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from modelyard import __version__
from modelyard.advisor.artifact import ArtifactInfo, human_bytes, human_count
from modelyard.advisor.hardware import Hardware
from modelyard.advisor.tuned import fingerprint, tuned_dir

log = logging.getLogger("modelyard.advisor")

SCHEMA = "modelyard-decode/1"
#: Runtimes whose decode speed `modelyard tune` measures.
DECODE_RUNTIMES = ("llamacpp", "transformers")
#: Two artifacts are one model when their parameter counts differ by at most this share.
SAME_SIZE = 0.2


@dataclass
class DecodeFigures:
    """Aggregate decode tokens/s of one text generator at each stream count (streamed
    completions of `tokens` tokens each, through a real server's OpenAI front)."""

    runtime: str
    tok_s: dict[int, float]  # streams -> aggregate tokens/s
    ttft_s: dict[int, float] = field(default_factory=dict)  # streams -> median first token
    tokens: int = 0
    settings: dict[str, str] = field(default_factory=dict)  # the advisor's, as served
    date: str = ""

    def describe(self) -> str:
        rates = ", ".join(
            f"{rate:.3g} tok/s at {n} stream{'s' * (n != 1)}"
            for n, rate in sorted(self.tok_s.items())
        )
        return f"{rates} ({self.runtime}, {self.date})"

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["tok_s"] = {str(k): v for k, v in self.tok_s.items()}  # JSON keys are strings
        out["ttft_s"] = {str(k): v for k, v in self.ttft_s.items()}
        return {"schema": SCHEMA, **out}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DecodeFigures:
        return cls(
            runtime=str(data["runtime"]),
            tok_s={int(k): float(v) for k, v in data["tok_s"].items()},
            ttft_s={int(k): float(v) for k, v in (data.get("ttft_s") or {}).items()},
            tokens=int(data.get("tokens", 0)),
            settings={str(k): str(v) for k, v in (data.get("settings") or {}).items()},
            date=str(data.get("date", "")),
        )


# ---- the cache -------------------------------------------------------------------------------


def decode_path(artifact: Path, hw: Hardware) -> Path:
    key = hashlib.sha256(_identity(artifact).encode()).hexdigest()[:16]
    return tuned_dir() / f"decode-{key}-{fingerprint(hw)}-{__version__}.json"


def _identity(artifact: Path) -> str:
    """Path, size and modification time; for a Hugging Face folder (or its config.json, a
    repository's artifact for it) the folder's, over every file in it."""
    folder = artifact.parent if artifact.name == "config.json" else artifact
    if folder.is_dir():
        stats = [p.stat() for p in folder.iterdir() if p.is_file()]
        size = sum(s.st_size for s in stats)
        return f"{folder.resolve()}|{size}|{max((s.st_mtime_ns for s in stats), default=0)}"
    stat = artifact.stat()
    return f"{artifact.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


def load_decode(artifact: Path, hw: Hardware) -> DecodeFigures | None:
    """The figures measured for this artifact on this machine, if any."""
    try:
        path = decode_path(artifact, hw)
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring the decode figures for %s: %s", artifact, exc)
        return None
    if data.get("schema") != SCHEMA:
        return None
    try:
        return DecodeFigures.from_json(data)
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("ignoring the decode figures for %s: %s", artifact, exc)
        return None


def save_decode(artifact: Path, figures: DecodeFigures, hw: Hardware) -> Path:
    path = decode_path(artifact, hw)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(json.dumps(figures.to_json(), indent=2) + "\n")
    partial.replace(path)
    return path


# ---- one model, two ways ---------------------------------------------------------------------


@dataclass
class Measured:
    """One advised text generator and what was measured for it."""

    name: str
    info: ArtifactInfo
    figures: DecodeFigures | None


@dataclass
class Comparison:
    """The same model as GGUF and as a Hugging Face folder."""

    gguf: Measured
    hf: Measured

    @property
    def family(self) -> str:
        return family(self.gguf.info)

    def verdicts(self) -> list[str]:
        """Per stream count measured for both: which is faster and by how much."""
        if self.gguf.figures is None or self.hf.figures is None:
            return []
        out = []
        ours, theirs = self.gguf.figures.tok_s, self.hf.figures.tok_s
        for streams in sorted(set(ours) & set(theirs)):
            a, b = ours[streams], theirs[streams]
            fast, slow = (self.gguf, self.hf) if a >= b else (self.hf, self.gguf)
            ratio = max(a, b) / max(min(a, b), 1e-9)
            out.append(
                f"{streams} stream{'s' * (streams != 1)}: {fast.name} ({_runtime(fast)}) "
                f"{max(a, b):.3g} tok/s, {ratio:.2g}x {slow.name} ({_runtime(slow)}, "
                f"{min(a, b):.3g})"
            )
        return out

    def why(self) -> str:
        """What bounds decoding on a CPU: the weight bytes read per step."""
        g, h = self.gguf.info, self.hf.info
        gb, hb = g.weight_bytes or g.size_bytes, h.weight_bytes or h.size_bytes
        text = (
            f"each decode step reads every weight once: {human_bytes(gb)} of "
            f"{g.quantization or 'GGUF'} weights for llama.cpp, {human_bytes(hb)} of "
            f"{h.quantization or 'safetensors'} for transformers ({hb / max(gb, 1):.2g}x)"
        )
        if self.gguf.figures is None or self.hf.figures is None:
            missing = [m.name for m in (self.gguf, self.hf) if m.figures is None]
            text += f"; not measured yet: run `modelyard tune` on {' and '.join(missing)}"
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "gguf": self.gguf.name,
            "hf": self.hf.name,
            "verdicts": self.verdicts(),
            "why": self.why(),
        }


def family(info: ArtifactInfo) -> str:
    """The architecture's family, one spelling for both formats: GGUF's `gemma3`, and
    transformers' `Gemma3ForCausalLM` or `gemma3_text`, are `gemma3`."""
    name = (info.architecture or "").lower()
    name = re.sub(r"(forcausallm|lmheadmodel)$", "", name).removesuffix("_text")
    return re.sub(r"[^a-z0-9]", "", name)


def compare(measured: list[Measured]) -> list[Comparison]:
    """Every (GGUF, Hugging Face folder) pair of text generators that hold one model."""
    ggufs = [m for m in measured if m.info.format == "gguf" and m.info.generates_text]
    folders = [m for m in measured if m.info.format == "hf" and m.info.generates_text]
    return [Comparison(g, h) for g in ggufs for h in folders if _same_model(g.info, h.info)]


def _same_model(a: ArtifactInfo, b: ArtifactInfo) -> bool:
    if not family(a) or family(a) != family(b) or not a.parameters or not b.parameters:
        return False
    return abs(a.parameters - b.parameters) <= SAME_SIZE * max(a.parameters, b.parameters)


def _runtime(m: Measured) -> str:
    return m.figures.runtime if m.figures is not None else m.info.format


def describe_pair(c: Comparison) -> str:
    """The heading of a comparison: the family and both sizes."""
    params = human_count(c.gguf.info.parameters or 0)
    return f"{c.family} ({params} parameters): {c.gguf.name} (GGUF) and {c.hf.name} (Hugging Face)"
