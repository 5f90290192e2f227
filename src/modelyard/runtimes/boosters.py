"""Gradient-boosted trees in their native formats: XGBoost (`.ubj`, `.json`) and LightGBM
(`.txt`). Input `input` (FP32, [batch, n_features]); output `predict`."""

from __future__ import annotations

from typing import Any

import numpy as np

from modelyard.errors import InvalidArgument, ModelLoadError
from modelyard.runtimes.base import Arrays, Runtime
from modelyard.spec.config import TensorSpec
from modelyard.tensors import datatype_of


class _BoosterRuntime(Runtime):
    named_inputs = False
    inline_safe = True
    booster: Any
    n_features: int

    def signature(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        sample = self._predict(np.zeros((1, self.n_features), dtype=np.float32))
        return (
            [TensorSpec("input", "FP32", [-1, self.n_features])],
            [TensorSpec("predict", datatype_of(sample), [-1, *sample.shape[1:]])],
        )

    def infer(self, inputs: Arrays) -> Arrays:
        x = next(iter(inputs.values()))
        try:
            return {"predict": self._predict(x)}
        except ValueError as exc:
            raise InvalidArgument(f"the booster rejected the input: {exc}") from exc

    def _predict(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class XGBoostRuntime(_BoosterRuntime):
    name = "xgboost"

    def load(self) -> None:
        import xgboost

        try:
            self.booster = xgboost.Booster(model_file=str(self.path))
        except xgboost.core.XGBoostError as exc:
            raise ModelLoadError(f"XGBoost cannot load {self.path.name}: {exc}") from exc
        self.booster.set_param({"nthread": int(self.config.parameters.get("nthread", 0)) or 1})
        self.n_features = int(self.booster.num_features())

    def _predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.inplace_predict(x))


class LightGBMRuntime(_BoosterRuntime):
    name = "lightgbm"

    def load(self) -> None:
        import lightgbm

        try:
            self.booster = lightgbm.Booster(model_file=str(self.path))
        except lightgbm.basic.LightGBMError as exc:
            raise ModelLoadError(f"LightGBM cannot load {self.path.name}: {exc}") from exc
        self.n_features = int(self.booster.num_feature())
        self._threads = int(self.config.parameters.get("num_threads", 1))

    def _predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.predict(x, num_threads=self._threads))
