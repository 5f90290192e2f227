"""TorchServe model archives for the tests, made as users make them: a tiny model saved with
torch, a handler file, and `torch-model-archiver` (run as its command would be)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from tests.torch_models import script

#: A class handler on a TorchScript MLP: JSON rows in, scores out; it reports the batch it
#: ran in and the request headers it saw, and honours a handler-set status and content type.
CLASS_HANDLER = """
import json
import torch


class MLPHandler:
    def initialize(self, context):
        folder = context.system_properties["model_dir"]
        serialized = context.manifest["model"]["serializedFile"]
        self.model = torch.jit.load(f"{folder}/{serialized}")
        self.batch_size = context.system_properties["batch_size"]
        self.context = context

    def preprocess(self, data):
        rows = []
        for item in data:
            value = item.get("data") or item.get("body")
            if isinstance(value, (bytes, bytearray)):
                value = json.loads(value)
            rows.append(value["x"] if isinstance(value, dict) else value)
        return torch.tensor(rows, dtype=torch.float32)

    def inference(self, batch):
        with torch.inference_mode():
            return self.model(batch)

    def postprocess(self, scores):
        return [
            {"scores": row, "batch": len(scores), "batch_size": self.batch_size}
            for row in scores.tolist()
        ]

    def handle(self, data, context):
        if context.get_request_header(0, "x-teapot"):
            context.set_response_status(418, "teapot", 0)
            context.set_response_content_type(0, "text/plain")
            return ["short and stout"] * len(data)
        return self.postprocess(self.inference(self.preprocess(data)))
"""

#: A function handler (`handler.py`, its `handle`) on an eager model from its model.py: text in,
#: text out; a request whose text is "boom" makes it raise.
FUNCTION_HANDLER = """
import torch
from model import Doubler

_model = None


def handle(data, context):
    global _model
    if data is None:  # TorchServe's initialisation call
        folder = context.system_properties["model_dir"]
        _model = Doubler()
        _model.load_state_dict(torch.load(f"{folder}/doubler.pt"))
        return None
    out = []
    for item in data:
        text = item.get("body")
        text = text.decode() if isinstance(text, (bytes, bytearray)) else text
        if text == "boom":
            raise ValueError("the handler was asked to fail")
        value = _model(torch.tensor([float(len(text))])).item()
        out.append(f"{text}SEPARATOR{value:g}")
    return out
"""

DOUBLER = """
import torch


class Doubler(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor([2.0]))

    def forward(self, x):
        return x * self.scale
"""

#: The text_classifier default handler's model: an EmbeddingBag and a linear layer.
TEXT_MODEL = """
import torch


class TextSentiment(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = torch.nn.EmbeddingBag(16, 4, mode="mean")
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, text, offsets):
        return self.fc(self.embedding(text, offsets))
"""


def archive(
    folder: Path,
    name: str,
    serialized: Path,
    handler: str,
    *,
    model_file: Path | None = None,
    extra: list[Path] | None = None,
    config: Path | None = None,
) -> Path:
    """`torch-model-archiver` with these arguments; the path of the .mar it wrote."""
    args = [
        sys.executable,
        "-m",
        "model_archiver.model_packaging",
        "--model-name",
        name,
        "--version",
        "1.0",
        "--serialized-file",
        str(serialized),
        "--handler",
        handler,
        "--export-path",
        str(folder),
        "--force",
    ]
    if model_file is not None:
        args += ["--model-file", str(model_file)]
    if extra:
        args += ["--extra-files", ",".join(map(str, extra))]
    if config is not None:
        args += ["--config-file", str(config)]
    subprocess.run(args, check=True, capture_output=True)
    return folder / f"{name}.mar"


def mlp_mar(folder: Path, name: str = "mlp", batch_size: int = 1, delay_ms: int = 100) -> Path:
    """A TorchScript MLP (4 -> 3) behind a class handler."""
    work = folder.parent / f".{name}-src"
    work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    script(model.eval(), work / "mlp.pt")
    (work / "mlp_handler.py").write_text(CLASS_HANDLER)
    yaml_text = f"batchSize: {batch_size}\nmaxBatchDelay: {delay_ms}\n"
    (work / "model-config.yaml").write_text(yaml_text)
    return archive(
        folder,
        name,
        work / "mlp.pt",
        str(work / "mlp_handler.py"),
        config=work / "model-config.yaml",
    )


def eager_mar(folder: Path, name: str = "doubler", separator: str = ":") -> Path:
    """An eager model (model.py + state dict) behind a function handler; its answers are
    TEXT + `separator` + the model's value."""
    work = folder.parent / f".{name}-src"
    work.mkdir(parents=True, exist_ok=True)
    (work / "model.py").write_text(DOUBLER)
    (work / "handler.py").write_text(FUNCTION_HANDLER.replace("SEPARATOR", separator))
    namespace: dict[str, object] = {}
    exec(compile(DOUBLER, "model.py", "exec"), namespace)
    doubler = namespace["Doubler"]
    assert isinstance(doubler, type)
    torch.save(doubler().state_dict(), work / "doubler.pt")
    return archive(
        folder,
        name,
        work / "doubler.pt",
        str(work / "handler.py"),
        model_file=work / "model.py",
    )


def text_mar(folder: Path, name: str = "sentiment") -> Path:
    """TorchServe's text_classifier default handler on a tiny EmbeddingBag model."""
    work = folder.parent / f".{name}-src"
    work.mkdir(parents=True, exist_ok=True)
    (work / "model.py").write_text(TEXT_MODEL)
    namespace: dict[str, object] = {}
    exec(compile(TEXT_MODEL, "model.py", "exec"), namespace)
    cls = namespace["TextSentiment"]
    assert isinstance(cls, type)
    torch.manual_seed(0)
    torch.save(cls().state_dict(), work / "sentiment.pt")
    words = ["good", "bad", "movie", "a", "very"]
    vocab = {w: i for i, w in enumerate(words)}
    vocab.update({f"{a} {b}": 5 + (i % 11) for i, (a, b) in enumerate(_pairs(words))})
    torch.save(vocab, work / "source_vocab.pt")
    (work / "index_to_name.json").write_text(json.dumps({"0": "negative", "1": "positive"}))
    return archive(
        folder,
        name,
        work / "sentiment.pt",
        "text_classifier",
        model_file=work / "model.py",
        extra=[work / "source_vocab.pt", work / "index_to_name.json"],
    )


def _pairs(words: list[str]) -> list[tuple[str, str]]:
    return [(a, b) for a in words for b in words]
