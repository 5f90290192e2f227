"""deploy/ checked without a cluster: the Helm chart (rendered by Helm's own engine where
helm-python-sdk is installed), the plain manifests under deploy/k8s rendered from it, and the
Dockerfile. Every object validates against its vendored schema (tests/deploy/schemas); the
containers' arguments parse as `modelyard serve` options; the probes, the scrape path, the
image's health check and KEDA's query are answered by a real server started with those very
arguments, through tritonclient."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import yaml
from jsonschema.validators import Draft202012Validator, validator_for

from modelyard.cli import main as cli
from tests.deploy import chart
from tests.deploy.promql import exported, selectors
from tests.models import addsub_onnx
from tests.server_process import ServerProcess

SCHEMAS = Path(__file__).parent / "schemas"
SCHEMA_FILES = {
    ("apps/v1", "Deployment"): "deployment-apps-v1.json",
    ("v1", "Service"): "service-v1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_servicemonitor_v1.json",
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_scaledobject_v1alpha1.json",
    ("serving.kserve.io/v1alpha1", "ClusterServingRuntime"): (
        "serving.kserve.io_clusterservingruntime_v1alpha1.json"
    ),
}
DOCKERFILE = chart.ROOT / "Dockerfile"
SERVE = cli.commands["serve"]

#: values users change, all at once: an API key, models fetched by an init container, KEDA with
#: scale to zero, KServe picking modelyard by itself, extra options and environment
EVERYTHING: dict[str, Any] = {
    "image": {"repository": "registry.example/modelyard", "tag": "0.1.0-all-llm"},
    "imagePullSecrets": [{"name": "pull"}],
    "apiKey": {"existingSecret": "modelyard-api-key"},
    "ports": {"http": 9000, "grpc": 9001},
    "server": {
        "modelControlMode": "explicit",
        "loadModels": ["iris", "gemma3"],
        "goal": "throughput",
        "trustPickle": True,
        "shutdownTimeoutSeconds": 60,
        "extraArgs": ["--memory-budget", "6GiB"],
        "env": [{"name": "MODELYARD_KEEP_ALIVE", "value": "10m"}],
    },
    "repository": {
        "initContainer": {
            "enabled": True,
            "image": "amazon/aws-cli:2.17.0",
            "args": ["s3", "sync", "s3://models/prod", "/models"],
        }
    },
    "keda": {
        "enabled": True,
        "minReplicaCount": 0,
        "maxReplicaCount": 8,
        "authenticationRef": "prometheus-auth",
        "wake": {"query": 'sum(rate(nginx_ingress_controller_requests{service="modelyard"}[1m]))'},
    },
    "kserve": {"enabled": True, "autoSelect": True, "priority": 2},
    "serviceMonitor": {"labels": {"release": "prometheus"}},
    "nodeSelector": {"kubernetes.io/arch": "amd64"},
    "tolerations": [{"key": "inference", "operator": "Exists", "effect": "NoSchedule"}],
    "podAnnotations": {"example.com/team": "ml"},
}
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "everything": EVERYTHING,
    "keda-without-monitor": {
        "keda": {"enabled": True, "minReplicaCount": 2},
        "serviceMonitor": {"enabled": False},
        "repository": {"existingClaim": "team-models", "subPath": "prod"},
    },
}

needs_helm = pytest.mark.skipif(
    not chart.helm_available(),
    reason="helm-python-sdk (Helm's engine, the `test` extra) is not installed: the chart is "
    "checked by its values only; deploy/k8s is still validated",
)


# -- the objects and their schemas ---------------------------------------------------------


def schema_errors(obj: dict[str, Any]) -> list[str]:
    key = (obj.get("apiVersion"), obj.get("kind"))
    assert key in SCHEMA_FILES, f"no vendored schema for {key}"
    schema = json.loads((SCHEMAS / SCHEMA_FILES[key]).read_text())
    validator = validator_for(schema, default=Draft202012Validator)(schema)
    return [
        f"{obj['kind']} {'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(obj)
    ]


def test_a_wrong_object_fails_its_schema() -> None:
    """The schemas are strict: a misspelled field or a wrong type is an error."""
    [deployment] = of_kind(chart.plain_objects(), "Deployment")
    bad = copy.deepcopy(deployment)
    bad["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pth"] = "/"
    bad["spec"]["replicas"] = "two"
    assert len(schema_errors(bad)) >= 2
    [scaled] = of_kind(chart.render({"keda": {"enabled": True}}), "ScaledObject")
    scaled["spec"]["minReplicas"] = 0
    assert schema_errors(scaled)


def test_the_plain_manifests_validate() -> None:
    objects = chart.plain_objects()
    assert {(o["apiVersion"], o["kind"]) for o in objects} == set(SCHEMA_FILES)
    for obj in objects:
        assert not schema_errors(obj)


@needs_helm
@pytest.mark.parametrize("name", VALUE_SETS)
def test_the_chart_renders_valid_objects(name: str) -> None:
    objects = chart.render(VALUE_SETS[name])
    kinds = [o["kind"] for o in objects]
    assert kinds.count("Deployment") == kinds.count("Service") == 1
    for obj in objects:
        assert not schema_errors(obj), schema_errors(obj)


@needs_helm
@pytest.mark.parametrize("file", chart.PLAIN_FILES)
def test_the_plain_manifests_are_the_charts_rendering(file: str) -> None:
    assert (chart.PLAIN / file).read_text() == chart.plain_text(file), (
        f"deploy/k8s/{file} is stale: run `make k8s-manifests`"
    )


def test_templates_read_only_values_that_exist() -> None:
    """Without Helm too: every `.Values.a.b` a template names (directly or through a
    `$x := .Values.a` variable) is in values.yaml, so a typo cannot render as empty."""
    values = yaml.safe_load((chart.CHART / "values.yaml").read_text())
    used: set[str] = set()
    for template in (chart.CHART / "templates").iterdir():
        text = template.read_text()
        aliases = dict(re.findall(r"\$(\w+) := \.Values\.([\w.]+)", text))
        used |= set(re.findall(r"\.Values\.([\w.]+)", text))
        for alias, path in aliases.items():
            used |= {f"{path}.{rest}" for rest in re.findall(rf"\${alias}\.([\w.]+)", text)}
    assert len(used) >= 40
    for path in sorted(used):
        node = values
        for part in path.split("."):
            assert isinstance(node, dict) and part in node, f".Values.{path} is not in values.yaml"
            node = node[part]


# -- what the values do ------------------------------------------------------------------------


@needs_helm
def test_scale_to_zero_needs_a_wake_signal() -> None:
    import helm_python

    with pytest.raises(helm_python.HelmRenderError, match=r"keda\.wake\.query"):
        chart.render({"keda": {"enabled": True, "minReplicaCount": 0}})
    [scaled] = of_kind(chart.render(EVERYTHING), "ScaledObject")
    assert scaled["spec"]["minReplicaCount"] == 0
    inflight, wake = scaled["spec"]["triggers"]
    assert wake["metadata"]["query"] == EVERYTHING["keda"]["wake"]["query"]
    assert inflight["authenticationRef"] == {"name": "prometheus-auth"}
    [deployment] = of_kind(chart.render(EVERYTHING), "Deployment")
    assert "replicas" not in deployment["spec"]  # KEDA owns the count


@needs_helm
def test_the_repository_comes_from_a_claim_or_an_init_container() -> None:
    import helm_python

    with pytest.raises(helm_python.HelmRenderError, match="existingClaim"):
        chart.render({"repository": {"existingClaim": ""}})
    [pod] = [d["spec"]["template"]["spec"] for d in of_kind(chart.render(EVERYTHING), "Deployment")]
    [init] = pod["initContainers"]
    assert init["args"][-1] == pod["containers"][0]["volumeMounts"][0]["mountPath"] == "/models"
    assert pod["volumes"] == [{"name": "models", "emptyDir": {"sizeLimit": "10Gi"}}]
    [claimed] = of_kind(chart.render(VALUE_SETS["keda-without-monitor"]), "Deployment")
    volume = claimed["spec"]["template"]["spec"]["volumes"][0]
    assert volume["persistentVolumeClaim"] == {"claimName": "team-models", "readOnly": True}


@needs_helm
def test_the_api_key_reaches_the_server_the_probe_and_prometheus() -> None:
    objects = chart.render(EVERYTHING)
    [deployment], [monitor] = of_kind(objects, "Deployment"), of_kind(objects, "ServiceMonitor")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    [key] = [e for e in container["env"] if e["name"] == "MODELYARD_API_KEY"]
    assert key["valueFrom"]["secretKeyRef"] == {"name": "modelyard-api-key", "key": "api-key"}
    assert "exec" in container["readinessProbe"]  # httpGet cannot send a key from a Secret
    assert monitor["spec"]["endpoints"][0]["authorization"]["credentials"]["name"] == (
        "modelyard-api-key"
    )
    assert container["image"] == "registry.example/modelyard:0.1.0-all-llm"
    [runtime] = of_kind(objects, "ClusterServingRuntime")
    assert {f["name"] for f in runtime["spec"]["supportedModelFormats"]} == {
        "onnx", "sklearn", "xgboost", "lightgbm", "gguf", "pytorch"
    }  # fmt: skip
    assert all(f["autoSelect"] for f in runtime["spec"]["supportedModelFormats"])


# -- the containers against the real CLI and server ------------------------------------------


def containers(objects: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(object, container) for each modelyard container: the Deployment's and KServe's."""
    for obj in of_kind(objects, "Deployment"):
        yield obj, obj["spec"]["template"]["spec"]["containers"][0]
    for obj in of_kind(objects, "ClusterServingRuntime"):
        yield obj, obj["spec"]["containers"][0]


def serve_options(args: list[str]) -> dict[str, Any]:
    """The container's arguments parsed by the real `modelyard serve` (click raises on an
    unknown option or a bad value)."""
    assert args[0] == "serve"
    with SERVE.make_context("serve", list(args[1:])) as ctx:
        return dict(ctx.params)


def test_unknown_options_are_refused() -> None:
    with pytest.raises(click.NoSuchOption):
        serve_options(["serve", "/models", "--grpc_port", "1"])


@pytest.mark.parametrize("source", ["plain", "everything"])
def test_the_containers_arguments_are_serve_options(source: str) -> None:
    if source == "everything" and not chart.helm_available():
        pytest.skip("helm-python-sdk is not installed")
    objects = chart.plain_objects() if source == "plain" else chart.render(EVERYTHING)
    found = 0
    for obj, container in containers(objects):
        options = serve_options(container["args"])
        ports = {p.get("name", "http"): p["containerPort"] for p in container["ports"]}
        assert options["http_port"] == ports["http"] and options["host"] == "0.0.0.0"
        if "grpc" in ports:
            assert options["grpc_port"] == ports["grpc"]
        if obj["kind"] == "Deployment":
            pod = obj["spec"]["template"]["spec"]
            assert options["shutdown_timeout"] + 5 <= pod["terminationGracePeriodSeconds"]
            mount = container["volumeMounts"][0]["mountPath"]
        else:  # KServe's storage initializer writes the model here
            mount = "/mnt/models"
        assert [str(p) for p in options["repositories"]] == [mount]
        found += 1
    assert found == 2


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("k8s-repo")
    addsub_onnx(root / "addsub.onnx")
    return root


def local_args(container: dict[str, Any], repo: Path) -> list[str]:
    """The container's `serve` arguments with the repository and host made local (the ports
    ServerProcess appends win: click keeps an option's last value)."""
    args = [str(repo) if a in ("/models", "/mnt/models") else a for a in container["args"][1:]]
    return ["127.0.0.1" if a == "0.0.0.0" else a for a in args]


def infer(server: ServerProcess) -> None:
    x = httpclient.InferInput("INPUT0", [1, 4], "FP32")
    x.set_data_from_numpy(np.ones((1, 4), np.float32))
    y = httpclient.InferInput("INPUT1", [1, 4], "INT32")
    y.set_data_from_numpy(np.ones((1, 4), np.int32))
    result = httpclient.InferenceServerClient(server.http_addr).infer("addsub", [x, y])
    assert result.as_numpy("OUTPUT0").tolist() == [[2.0] * 4]


def test_the_deployments_probes_and_scrape_path_answer(tiny_repo: Path) -> None:
    """The Deployment's own arguments start a server whose probe paths and the ServiceMonitor's
    path answer, and whose /metrics holds the series KEDA's trigger queries."""
    objects = chart.plain_objects()
    [(_, container)] = [c for c in containers(objects) if c[0]["kind"] == "Deployment"]
    [monitor], [scaled] = of_kind(objects, "ServiceMonitor"), of_kind(objects, "ScaledObject")
    with ServerProcess(*local_args(container, tiny_repo)) as server:
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            path = container[probe]["httpGet"]["path"]
            assert httpx.get(server.url + path, timeout=5).status_code == 200, probe
        infer(server)
        scrape = httpx.get(server.url + monitor["spec"]["endpoints"][0]["path"], timeout=5)
        assert scrape.status_code == 200
        names = exported(server.url)
    [trigger] = scaled["spec"]["triggers"]
    read = {name for name, _ in selectors(trigger["metadata"]["query"])}
    assert "modelyard_inference_inflight_requests" in read
    assert read - set(names) <= {"vllm:num_requests_running", "vllm:num_requests_waiting"}


def test_kedas_llm_series_are_exported(llm_server: ServerProcess) -> None:
    [scaled] = of_kind(chart.plain_objects(), "ScaledObject")
    read = {name for name, _ in selectors(scaled["spec"]["triggers"][0]["metadata"]["query"])}
    names = exported(llm_server.url)
    assert {n for n in read if n.startswith("vllm:")} <= set(names)


def test_the_kserve_runtime_serves_both_protocols(tiny_repo: Path) -> None:
    """KServe's container arguments: v2 over HTTP and gRPC (its protocolVersions), from the
    folder KServe fills."""
    found = containers(chart.plain_objects())
    [(runtime, container)] = [c for c in found if c[0]["kind"] == "ClusterServingRuntime"]
    assert runtime["spec"]["protocolVersions"] == ["v2", "grpc-v2"]
    with ServerProcess(*local_args(container, tiny_repo)) as server:
        path = container["readinessProbe"]["httpGet"]["path"]
        assert httpx.get(server.url + path, timeout=5).status_code == 200
        infer(server)
        client = grpcclient.InferenceServerClient(server.grpc_addr)
        assert client.is_model_ready("addsub")


# -- the image ----------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def test_the_dockerfile_matches_the_cli() -> None:
    steps = dockerfile()
    exposed = [a for i, a in steps if i == "EXPOSE"]
    http = next(p for p in SERVE.params if p.name == "http_port").default
    grpc = next(p for p in SERVE.params if p.name == "grpc_port").default
    assert exposed == [f"{http} {grpc}"]
    env = dict(re.findall(r"(MODELYARD_\w+)=(\S+)", " ".join(a for i, a in steps if i == "ENV")))
    envvars = {p.envvar for p in SERVE.params} | {"MODELYARD_CACHE"}  # settings.cache_dir
    assert set(env) <= envvars
    assert env["MODELYARD_HOST"] == "0.0.0.0"
    assert [a for i, a in steps if i == "VOLUME"] == [f'["{env["MODELYARD_REPOSITORY"]}"]']
    assert json.loads(next(a for i, a in steps if i == "ENTRYPOINT")) == ["modelyard"]
    assert json.loads(next(a for i, a in steps if i == "CMD")) == ["serve"]
    [user] = [a for i, a in steps if i == "USER"]
    assert not user.startswith(("0:", "root"))
    makefile = (chart.ROOT / "Makefile").read_text()
    llama = re.search(r"LLAMA_VERSION := (\S+)", makefile)
    assert llama and f"ARG LLAMA_VERSION={llama.group(1)}" in DOCKERFILE.read_text()
    assert "GGML_NATIVE=OFF" in DOCKERFILE.read_text()


def healthcheck() -> list[str]:
    [args] = [a for i, a in dockerfile() if i == "HEALTHCHECK"]
    command: list[str] = json.loads(args.split("CMD", 1)[1])
    return command


def test_the_health_checks_send_the_api_key(tiny_repo: Path) -> None:
    """The image's HEALTHCHECK and the chart's readiness command (the same line) pass on a
    ready server that wants a key, and fail with a wrong key or none."""
    check = healthcheck()
    assert "v2/health/ready" in check[2]
    if chart.helm_available():
        [keyed] = of_kind(chart.render(EVERYTHING), "Deployment")
        probe = keyed["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
        assert probe["exec"]["command"] == check
    with ServerProcess(str(tiny_repo), api_key="s3cret", env={"MODELYARD_API_KEY": "s3cret"}) as s:
        assert httpx.get(f"{s.url}/v2/health/ready", timeout=5).status_code == 401

        def run(key: str) -> int:
            env = {"MODELYARD_HTTP_PORT": str(s.http_port), "MODELYARD_API_KEY": key}
            return subprocess.run([sys.executable, *check[1:]], env=env, timeout=30).returncode

        assert run("s3cret, other") == 0
        assert run("wrong") != 0
        assert run("") != 0


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]
