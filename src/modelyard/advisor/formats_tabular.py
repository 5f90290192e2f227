"""Inspectors for tabular models: scikit-learn (skops zip or pickle), XGBoost and LightGBM.
Nothing is unpickled or built: skops files are read as zips (their schema.json names the
estimator), pickles are walked opcode by opcode, boosters are read as text or bytes."""

from __future__ import annotations

import json
import pickletools
import re
import zipfile
from pathlib import Path

from modelyard.advisor.artifact import ArtifactInfo

# estimator class name endings -> task
_SKLEARN_TASKS = (
    ("Classifier", "classifier"),
    ("LogisticRegression", "classifier"),
    ("SVC", "classifier"),
    ("NB", "classifier"),
    ("Regressor", "regressor"),
    ("Regression", "regressor"),
    ("SVR", "regressor"),
    ("Lasso", "regressor"),
    ("Ridge", "regressor"),
    ("ElasticNet", "regressor"),
    ("Scaler", "transform"),
    ("PCA", "transform"),
    ("Encoder", "transform"),
)


def sklearn_task(class_name: str) -> str:
    for ending, task in _SKLEARN_TASKS:
        if class_name.endswith(ending):
            return task
    return "unknown"


def inspect_skops(path: Path) -> ArtifactInfo:
    with zipfile.ZipFile(path) as archive:
        schema = json.loads(archive.read("schema.json"))
        array_bytes = sum(i.file_size for i in archive.infolist() if i.filename.endswith(".npy"))
    estimator = str(schema.get("__class__", ""))
    if estimator == "Pipeline":
        estimator = _last_step(schema) or estimator
    return ArtifactInfo(
        path,
        "sklearn",
        container="skops",
        task=sklearn_task(estimator),
        size_bytes=path.stat().st_size,
        weight_bytes=array_bytes,
        architecture=estimator,
        dynamic_batch=True,
        details={
            "module": str(schema.get("__module__", "")),
            "untrusted_types": _untrusted(path),
        },
    )


def _untrusted(path: Path) -> list[str]:
    """Types in the file that neither skops nor modelyard's curated list trusts (they load
    only with --trust-pickle); [] when skops is not installed to say."""
    try:
        from modelyard.runtimes.sklearn import untrusted_skops_types

        return untrusted_skops_types(path)
    except ImportError:
        return []
    except Exception:  # skops could not read its own schema: the load will say why
        return []


def _last_step(schema: dict[str, object]) -> str | None:
    found = re.findall(
        r'"__class__": "(\w+)", "__module__": "sklearn\.(?!pipeline)', json.dumps(schema)
    )
    return found[-1] if found else None


def inspect_pickle(path: Path) -> ArtifactInfo:
    """The first class a pickle names is its top object: read without unpickling."""
    estimator, module = _first_global(path)
    return ArtifactInfo(
        path,
        "sklearn",
        container="pickle",
        task=sklearn_task(estimator),
        size_bytes=path.stat().st_size,
        weight_bytes=path.stat().st_size,
        architecture=estimator or None,
        dynamic_batch=True,
        details={"module": module},
    )


def _first_global(path: Path) -> tuple[str, str]:
    strings: list[str] = []
    with path.open("rb") as f:
        try:
            for op, arg, _ in pickletools.genops(f):
                if op.name == "GLOBAL" and isinstance(arg, str):
                    module, _, name = arg.partition(" ")
                    return name, module
                if op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    return strings[-1], strings[-2]
                if isinstance(arg, str):
                    strings.append(arg)
        except ValueError:  # joblib writes raw array bytes inside the stream
            pass
    return "", ""


# ---- gradient-boosted trees ----------------------------------------------------------------

_OBJECTIVE_TASKS = {
    "multi": "classifier",
    "binary": "classifier",
    "reg": "regressor",
    "count": "regressor",
    "survival": "regressor",
    "rank": "ranking",
}
_XGB_OBJECTIVE = re.compile(rb"(reg|binary|multi|rank|count|survival):[a-z_]+")


def inspect_xgboost(path: Path) -> ArtifactInfo:
    data = path.read_bytes()
    objective = _XGB_OBJECTIVE.search(data)
    name = objective.group(0).decode() if objective else ""
    return ArtifactInfo(
        path,
        "xgboost",
        container=path.suffix.lstrip(".").lower(),
        task=_OBJECTIVE_TASKS.get(name.partition(":")[0], "unknown"),
        size_bytes=len(data),
        weight_bytes=len(data),
        architecture="gbtree",
        dynamic_batch=True,
        details={
            "objective": name,
            "trees": _xgb_number(data, b"num_trees"),
            "features": _xgb_number(data, b"num_feature"),
        },
    )


def _xgb_number(data: bytes, key: bytes) -> int:
    match = re.search(re.escape(key) + rb"[^0-9]{1,12}(\d+)", data)
    return int(match.group(1)) if match else 0


_LGB_TASKS = (
    ("multiclass", "classifier"),
    ("binary", "classifier"),
    ("cross_entropy", "classifier"),
    ("lambdarank", "ranking"),
    ("rank_xendcg", "ranking"),
)


def inspect_lightgbm(path: Path) -> ArtifactInfo:
    header = _lightgbm_header(path)
    objective = header.get("objective", "").split(" ")[0]
    task = next(
        (t for prefix, t in _LGB_TASKS if objective.startswith(prefix)),
        "regressor" if objective else "unknown",
    )
    return ArtifactInfo(
        path,
        "lightgbm",
        container="text",
        task=task,
        size_bytes=path.stat().st_size,
        weight_bytes=path.stat().st_size,
        architecture="gbdt",
        dynamic_batch=True,
        details={
            "objective": objective,
            "trees": len(header.get("tree_sizes", "").split()),
            "features": int(header.get("max_feature_idx", "-1")) + 1,
        },
    )


def _lightgbm_header(path: Path) -> dict[str, str]:
    header: dict[str, str] = {}
    with path.open("r", encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("Tree="):
                break
            key, sep, value = line.strip().partition("=")
            if sep:
                header[key] = value
    return header
