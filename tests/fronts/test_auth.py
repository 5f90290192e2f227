"""API keys, pickle safety, and model control modes on the real server."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.server_process import ServerProcess


def test_api_keys_guard_every_route_but_liveness(model_repo: Path, tmp_path: Path) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text("# team keys\nsecond-key\n")
    with ServerProcess(
        str(model_repo),
        "--model-control-mode",
        "explicit",
        "--load-model",
        "identity_fp32",
        "--api-key",
        "first-key",
        "--api-key-file",
        str(key_file),
        api_key="first-key",
        log_path=tmp_path / "log",
    ) as own:
        assert httpx.get(f"{own.url}/v2/health/live").status_code == 200
        for path in ("/v2/health/ready", "/v2", "/v2/models/identity_fp32", "/"):
            response = httpx.get(own.url + path)
            assert response.status_code == 401, path
            assert "Bearer" in response.json()["error"]
        wrong = httpx.get(f"{own.url}/v2", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        for key in ("first-key", "second-key"):
            client = httpclient.InferenceServerClient(own.http_addr, ssl=False)
            headers = {"Authorization": f"Bearer {key}"}
            x = httpclient.InferInput("x", [1, 2], "FP32")
            x.set_data_from_numpy(np.ones((1, 2), np.float32))
            result = client.infer("identity_fp32", [x], headers=headers)
            np.testing.assert_array_equal(result.as_numpy("y"), np.ones((1, 2), np.float32))
        with pytest.raises(InferenceServerException, match="API key"):
            client.infer("identity_fp32", [x])


def test_pickles_need_trust(model_repo: Path, tmp_path: Path) -> None:
    with ServerProcess(
        str(model_repo),
        "--model-control-mode",
        "explicit",
        "--load-model",
        "iris_tree",
        log_path=tmp_path / "log",
    ) as own:
        index = {r["name"]: r for r in httpx.post(f"{own.url}/v2/repository/index").json()}
        assert index["iris_tree"]["state"] == "UNAVAILABLE"
        assert "--trust-pickle" in index["iris_tree"]["reason"]
        response = httpx.post(f"{own.url}/v2/repository/models/iris_tree/load")
        assert response.status_code == 400
        assert "--trust-pickle" in response.json()["error"]
        # nothing sent over the network may widen what the operator allowed
        config = '{"parameters": {"trust_pickle": {"string_value": "true"}}}'
        response = httpx.post(
            f"{own.url}/v2/repository/models/iris_tree/load",
            json={"parameters": {"config": config}},
        )
        assert response.status_code == 400, response.text
        assert "cannot set trust_pickle" in response.json()["error"]
        assert httpx.get(f"{own.url}/v2/models/iris_tree/ready").status_code == 400


def test_a_models_own_config_can_trust_its_pickle(model_repo: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "iris_tree").mkdir(parents=True)
    (repo / "iris_tree" / "model.joblib").write_bytes(
        (model_repo / "iris_tree.joblib").read_bytes()
    )
    (repo / "iris_tree" / "model.yaml").write_text("trust_pickle: true\n")
    with ServerProcess(str(repo), log_path=tmp_path / "log") as own:
        assert httpx.get(f"{own.url}/v2/models/iris_tree/ready").status_code == 200


def test_control_mode_none_refuses_repository_changes(model_repo: Path, tmp_path: Path) -> None:
    args = ("--trust-pickle", "--model-control-mode", "none")
    with ServerProcess(str(model_repo), *args, log_path=tmp_path / "log") as own:
        response = httpx.post(f"{own.url}/v2/repository/models/addsub/unload")
        assert response.status_code == 400
        assert "--model-control-mode explicit" in response.json()["error"]
        assert httpx.get(f"{own.url}/v2/models/addsub/ready").status_code == 200
