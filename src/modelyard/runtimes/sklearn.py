"""scikit-learn estimators: `.skops` (safe) and pickle-based `.joblib` / `.pkl` (trusted only).

Input `input` (FP64, [batch, n_features]); outputs `predict` and, for classifiers,
`predict_proba` — the names MLServer's sklearn runtime uses.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modelyard.errors import InvalidArgument, ModelLoadError
from modelyard.runtimes.base import Arrays, Runtime
from modelyard.spec.config import TensorSpec
from modelyard.tensors import as_bytes_array, datatype_of


def load_skops(path: Any, trusted: bool) -> Any:
    import skops.io as sio

    untrusted = sio.get_untrusted_types(file=path)
    if untrusted and not trusted:
        raise ModelLoadError(
            f"{path.name} holds types skops does not trust by default: {untrusted}; "
            "start with --trust-pickle or set trust_pickle: true for this model if you trust it"
        )
    return sio.load(path, trusted=untrusted)


def load_pickle(path: Any) -> Any:
    import joblib

    return joblib.load(path)


class SklearnRuntime(Runtime):
    name = "sklearn"
    named_inputs = False
    inline_safe = True

    estimator: Any

    @property
    def is_pickle(self) -> bool:
        return self.path.suffix.lower() != ".skops"

    def load(self) -> None:
        try:
            if self.is_pickle:
                self.estimator = load_pickle(self.path)
            else:
                self.estimator = load_skops(self.path, bool(self.config.trust_pickle))
        except ModelLoadError:
            raise
        except Exception as exc:
            raise ModelLoadError(f"cannot load {self.path.name}: {exc}") from exc
        if not hasattr(self.estimator, "predict"):
            raise ModelLoadError(
                f"{self.path.name} holds a {type(self.estimator).__name__}, which has no predict()"
            )
        self._probe = _probe_outputs(self.estimator)

    def signature(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        n_features = int(getattr(self.estimator, "n_features_in_", -1))
        inputs = [TensorSpec("input", "FP64", [-1, n_features])]
        return inputs, self._probe

    def infer(self, inputs: Arrays) -> Arrays:
        x = next(iter(inputs.values()))
        try:
            out = {"predict": _normalise(self.estimator.predict(x))}
            if len(self._probe) > 1:
                out["predict_proba"] = np.asarray(self.estimator.predict_proba(x))
        except ValueError as exc:
            raise InvalidArgument(f"the estimator rejected the input: {exc}") from exc
        return out


def _normalise(predictions: Any) -> np.ndarray:
    array = np.asarray(predictions)
    if array.dtype.kind in "OUS":
        return as_bytes_array(array)
    return array


def _probe_outputs(estimator: Any) -> list[TensorSpec]:
    n_features = int(getattr(estimator, "n_features_in_", 0))
    classes = getattr(estimator, "classes_", None)
    if n_features > 0:
        sample = np.zeros((1, n_features))
        predicted = _normalise(estimator.predict(sample))
        specs = [TensorSpec("predict", datatype_of(predicted), [-1, *predicted.shape[1:]])]
    else:
        specs = [TensorSpec("predict", "FP64", [-1])]
    if classes is not None and hasattr(estimator, "predict_proba"):
        specs.append(TensorSpec("predict_proba", "FP64", [-1, len(classes)]))
    return specs
