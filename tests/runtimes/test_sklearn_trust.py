"""skops files of scikit-learn's common estimator families load without --trust-pickle; a type
outside the curated list (runtimes/sklearn.py: SKOPS_TRUSTED_TYPES) is still refused, by name."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from modelyard.runtimes.sklearn import SKOPS_TRUSTED_TYPES
from tests.server_process import ServerProcess

sio = pytest.importorskip("skops.io")


def _families() -> dict[str, Callable[[], Any]]:
    from sklearn import ensemble, neighbors, neural_network, tree

    return {
        "random_forest": lambda: ensemble.RandomForestClassifier(n_estimators=20, random_state=0),
        "extra_trees": lambda: ensemble.ExtraTreesRegressor(n_estimators=5, random_state=0),
        "gradient_boosting": lambda: ensemble.GradientBoostingClassifier(n_estimators=5),
        "hist_gradient_boosting": lambda: ensemble.HistGradientBoostingRegressor(max_iter=5),
        "adaboost": lambda: ensemble.AdaBoostClassifier(n_estimators=5, random_state=0),
        "decision_tree": lambda: tree.DecisionTreeRegressor(random_state=0),
        "knn_kd_tree": lambda: neighbors.KNeighborsClassifier(algorithm="kd_tree"),
        "knn_ball_tree": lambda: neighbors.KNeighborsRegressor(
            algorithm="ball_tree", metric="manhattan"
        ),
        "knn_chebyshev": lambda: neighbors.KNeighborsRegressor(metric="chebyshev"),
        "mlp_adam": lambda: neural_network.MLPClassifier(max_iter=5, random_state=0),
        "mlp_sgd": lambda: neural_network.MLPRegressor(solver="sgd", max_iter=5, random_state=0),
    }


class Doubler:
    """Not scikit-learn's: skops saves it by its module and name, and does not trust it."""

    n_features_in_ = 4

    def fit(self, x: np.ndarray, y: np.ndarray) -> Doubler:
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(np.asarray(x).sum(axis=1) * 2)


ROWS = np.random.default_rng(0).random((80, 4))
LABELS = (ROWS[:, 0] > 0.5).astype(np.int64)


def _fit(estimator: Any) -> Any:
    regressor = "Regressor" in type(estimator).__name__
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLPs warn that 5 iterations do not converge
        return estimator.fit(ROWS, ROWS[:, 1] if regressor else LABELS)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    repo = tmp_path_factory.mktemp("skops-repo")
    estimators = {name: _fit(make()) for name, make in _families().items()}
    for name, estimator in estimators.items():
        sio.dump(estimator, repo / f"{name}.skops")
    sio.dump(Doubler(), repo / "doubler.skops")
    return repo, estimators


@pytest.fixture(scope="module")
def server(
    fitted: tuple[Path, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("skops-logs") / "server.log"
    with ServerProcess(
        str(fitted[0]), "--model-control-mode", "explicit", log_path=log
    ) as process:  # no --trust-pickle
        yield process


def test_every_curated_type_exists_in_the_installed_scikit_learn() -> None:
    for dotted in SKOPS_TRUSTED_TYPES:
        module, _, name = dotted.rpartition(".")
        assert hasattr(importlib.import_module(module), name), dotted


def test_each_family_needs_a_curated_type(fitted: tuple[Path, dict[str, Any]]) -> None:
    """Each family is here because skops alone would refuse it, and the list covers it."""
    repo, estimators = fitted
    for name in estimators:
        untrusted = sio.get_untrusted_types(file=repo / f"{name}.skops")
        assert untrusted, name
        assert set(untrusted) <= SKOPS_TRUSTED_TYPES, (name, untrusted)


@pytest.mark.parametrize("name", list(_families()))
def test_family_loads_and_serves_without_trust_pickle(
    server: ServerProcess, fitted: tuple[Path, dict[str, Any]], name: str
) -> None:
    client = httpclient.InferenceServerClient(server.http_addr)
    client.load_model(name)
    rows = ROWS[:5]
    tensor = httpclient.InferInput("input", list(rows.shape), "FP64")
    tensor.set_data_from_numpy(rows, binary_data=True)
    result = client.infer(name, [tensor])
    np.testing.assert_allclose(result.as_numpy("predict"), fitted[1][name].predict(rows))


def test_other_types_are_refused_by_name(server: ServerProcess) -> None:
    client = httpclient.InferenceServerClient(server.http_addr)
    with pytest.raises(InferenceServerException) as refused:
        client.load_model("doubler")
    message = str(refused.value)
    assert "tests.runtimes.test_sklearn_trust.Doubler" in message
    assert "--trust-pickle" in message


def test_advise_warns_before_loading_and_names_the_type(
    fitted: tuple[Path, dict[str, Any]],
) -> None:
    from click.testing import CliRunner

    from modelyard.cli import main

    repo = fitted[0]
    refused = CliRunner().invoke(main, ["advise", str(repo / "doubler.skops")])
    assert refused.exit_code == 0, refused.output
    assert "tests.runtimes.test_sklearn_trust.Doubler" in refused.output.replace("\n", " ")
    assert "--trust-pickle" in refused.output
    forest = CliRunner().invoke(main, ["advise", str(repo / "random_forest.skops")])
    assert forest.exit_code == 0 and "--trust-pickle" not in forest.output
