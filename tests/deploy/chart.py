"""The Helm chart (deploy/helm/modelyard) rendered by Helm's own template engine, and the plain
manifests under deploy/k8s that are rendered from it for users without Helm.

Helm here is `helm-python-sdk` (the `test` extra): Helm's Go SDK behind a C ABI, so `render` is
what `helm template` prints, without a helm binary. After a chart change:

    make k8s-manifests      # or .venv/bin/python -m tests.deploy.chart: rewrites deploy/k8s
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "modelyard"
PLAIN = ROOT / "deploy" / "k8s"
RELEASE = NAMESPACE = "modelyard"

#: each plain manifest file: the values it is rendered with and the templates it holds
PLAIN_FILES: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "modelyard.yaml": ({}, ("deployment.yaml", "service.yaml", "servicemonitor.yaml")),
    "keda-scaledobject.yaml": ({"keda": {"enabled": True}}, ("scaledobject.yaml",)),
    "kserve-clusterservingruntime.yaml": (
        {"kserve": {"enabled": True}},
        ("clusterservingruntime.yaml",),
    ),
}

HEADER = (
    "# Rendered from deploy/helm/modelyard (release {release}, namespace {namespace}{values}) by\n"
    "# `make k8s-manifests`; change the chart, not this file. docs/kubernetes.md.\n"
)


def helm_available() -> bool:
    return importlib.util.find_spec("helm_python") is not None


def render_templates(values: dict[str, Any]) -> dict[str, str]:
    """Each template's rendered text by its file name (`deployment.yaml`), as `helm template`
    renders them; a template's `fail` raises helm_python.HelmRenderError."""
    import helm_python

    with helm_python.Chart.load(str(CHART)) as chart:
        rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    return {Path(path).name: text for path, text in rendered.items()}


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    """The Kubernetes objects the chart makes with these values."""
    texts = render_templates(values)
    return [
        doc
        for name, text in sorted(texts.items())
        if name.endswith(".yaml")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def plain_text(file: str) -> str:
    """One file of deploy/k8s as the chart renders it now."""
    values, templates = PLAIN_FILES[file]
    texts = render_templates(values)
    shown = f", values {yaml.safe_dump(values, default_flow_style=True).strip()}" if values else ""
    header = HEADER.format(release=RELEASE, namespace=NAMESPACE, values=shown)
    body = "---\n".join(texts[name].strip() + "\n" for name in templates)
    return header + "---\n" + body


def plain_objects() -> list[dict[str, Any]]:
    """Every object in deploy/k8s as committed (read without Helm)."""
    return [
        doc
        for path in sorted(PLAIN.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def main() -> None:
    PLAIN.mkdir(parents=True, exist_ok=True)
    for file in PLAIN_FILES:
        (PLAIN / file).write_text(plain_text(file))
        print(f"wrote {PLAIN / file}", file=sys.stderr)


if __name__ == "__main__":
    main()
