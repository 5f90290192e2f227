"""Tiny PyTorch models the tests build themselves: a CNN and an MLP, scripted or traced to
TorchScript and exported with torch.export, in Triton's layout and as bare files."""

from __future__ import annotations

import textwrap
import warnings
from pathlib import Path

import torch

#: The CNN's input: one channel of 8 x 8 pixels.
IMAGE = (1, 8, 8)
CLASSES = 3


class TinyCNN(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.head = torch.nn.Linear(4 * 4 * 4, CLASSES)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        pooled = torch.nn.functional.max_pool2d(torch.relu(self.conv(image)), 2)
        return torch.softmax(self.head(pooled.flatten(1)), dim=1)


class AddSubMLP(torch.nn.Module):
    """Two named inputs and two outputs: (mlp(a) + b, mlp(a) - b)."""

    def __init__(self) -> None:
        super().__init__()
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)
        )

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.mlp(a)
        return y + b, y - b


def models() -> tuple[TinyCNN, AddSubMLP]:
    torch.manual_seed(0)
    return TinyCNN().eval(), AddSubMLP().eval()


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())


def script(module: torch.nn.Module, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(module).save(str(path))  # type: ignore[no-untyped-call]


def _trace(module: torch.nn.Module, example: tuple[torch.Tensor, ...], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.trace(module, example).save(str(path))  # type: ignore[no-untyped-call]


def export(
    module: torch.nn.Module, example: tuple[torch.Tensor, ...]
) -> torch.export.ExportedProgram:
    """The module exported with a dynamic batch dimension on every input."""
    batch = torch.export.Dim("batch", max=1024)
    names = list(module.forward.__code__.co_varnames[1 : 1 + len(example)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.export.export(module, example, dynamic_shapes={n: {0: batch} for n in names})


def build_torch_repository(root: Path) -> Path:
    """cnn_script (TorchScript, Triton's INPUT__0/OUTPUT__0), addsub_traced (TorchScript with
    inputs named after forward's arguments, listed out of order), cnn_export (a torch.export
    program in Triton's layout with no tensors listed), addsub.pt2 (a bare exported file)."""
    cnn, mlp = models()
    script(cnn, root / "cnn_script" / "1" / "model.pt")
    _write(
        root / "cnn_script" / "config.pbtxt",
        """
        platform: "pytorch_libtorch"
        max_batch_size: 16
        input [{ name: "INPUT__0", data_type: TYPE_FP32, dims: [1, 8, 8] }]
        output [{ name: "OUTPUT__0", data_type: TYPE_FP32, dims: [3] }]
        dynamic_batching { max_queue_delay_microseconds: 50000 }
        """,
    )
    pair = (torch.zeros(2, 4), torch.zeros(2, 4))
    _trace(mlp, pair, root / "addsub_traced" / "1" / "model.pt")
    _write(
        root / "addsub_traced" / "config.pbtxt",
        """
        platform: "pytorch_libtorch"
        max_batch_size: 8
        input [
          { name: "b", data_type: TYPE_FP32, dims: [4] },
          { name: "a", data_type: TYPE_FP32, dims: [4] }
        ]
        output [
          { name: "SUM__0", data_type: TYPE_FP32, dims: [4] },
          { name: "DIFF__1", data_type: TYPE_FP32, dims: [4] }
        ]
        """,
    )
    (root / "cnn_export" / "1").mkdir(parents=True)
    torch.export.save(
        export(cnn, (torch.zeros(2, *IMAGE),)), root / "cnn_export" / "1" / "model.pt2"
    )
    _write(
        root / "cnn_export" / "config.pbtxt",
        """
        backend: "pytorch"
        default_model_filename: "model.pt2"
        dynamic_batching { max_queue_delay_microseconds: 50000 }
        """,
    )
    torch.export.save(export(mlp, pair), root / "addsub.pt2")
    return root
