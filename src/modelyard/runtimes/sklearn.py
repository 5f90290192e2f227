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

#: scikit-learn's own building blocks that skops does not trust by default, though a fitted
#: estimator is made of them: a forest's trees, a histogram booster's predictors, a neighbours
#: index and its metric, an MLP's optimizer state. The one list the loader trusts without
#: --trust-pickle (tests/runtimes/test_sklearn_trust.py saves each family with the installed
#: scikit-learn and loads it); any other type skops distrusts is refused, by name.
SKOPS_TRUSTED_TYPES = frozenset(
    {
        "sklearn.tree._tree.Tree",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.neighbors._kd_tree.KDTree",
        "sklearn.neighbors._ball_tree.BallTree",
        "sklearn.metrics._dist_metrics.EuclideanDistance64",
        "sklearn.metrics._dist_metrics.ManhattanDistance64",
        "sklearn.metrics._dist_metrics.ChebyshevDistance64",
        "sklearn.metrics._dist_metrics.MinkowskiDistance64",
        "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
        "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
        "sklearn.utils._bunch.Bunch",
    }
)


def untrusted_skops_types(path: Any) -> list[str]:
    """The types in a skops file that neither skops nor SKOPS_TRUSTED_TYPES trusts."""
    import skops.io as sio

    return [t for t in sio.get_untrusted_types(file=path) if t not in SKOPS_TRUSTED_TYPES]


def load_skops(path: Any, trusted: bool) -> Any:
    import skops.io as sio

    refused = untrusted_skops_types(path)
    if refused and not trusted:
        raise ModelLoadError(
            f"{path.name} holds types that neither skops nor modelyard trusts: "
            f"{', '.join(refused)}; start with --trust-pickle or set trust_pickle: true for "
            "this model if you trust the file"
        )
    return sio.load(path, trusted=sio.get_untrusted_types(file=path))


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
