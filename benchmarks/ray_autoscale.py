"""modelyard on Ray Serve under a step load: idle, then clients, then idle again (issue 15's
autoscaling plot).

One model, `slow` (a Python model: 0.1 s per request, one execution at a time, so requests
queue inside it), served by `modelyard.ray:build_app` with model.yaml's `autoscaling` section
(below). `--clients` closed-loop clients (each sends its next request when the last is
answered) run during the load phase only. Every 0.5 s the script records Ray Serve's replica
count (`serve.status()`: running, and starting) and the requests answered since the last
sample, and writes:

  benchmarks/.work/results/ray-autoscale-STAMP.json   the series and the settings
  docs/ray-autoscaling.png                            replicas and req/s over time

    python benchmarks/ray_autoscale.py                     # 10 s idle, 30 s load, 30 s idle
    python benchmarks/ray_autoscale.py --load 10 --after 15  # a quicker check
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import procs

HERE = Path(__file__).resolve().parent
#: model.yaml's autoscaling section for `slow`: Ray's delays made short enough to watch.
SCALING = {
    "min_replicas": 1,
    "max_replicas": 4,
    "target_ongoing_requests": 4,
    "upscale_delay_s": 2,
    "downscale_delay_s": 5,
    "look_back_period_s": 2,
    "metrics_interval_s": 0.5,
}
MODEL = textwrap.dedent("""\
    import time

    import modelyard


    class Slow(modelyard.Model):
        def load(self):
            self.delay = float(self.parameters.get("delay", "0.1"))

        def predict(self, inputs):
            time.sleep(self.delay)
            return {"Y": inputs["X"]}
    """)
BODY = {"inputs": [{"name": "X", "shape": [1], "datatype": "FP32", "data": [1.0]}]}
SAMPLE_S = 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--before", type=float, default=10, help="idle seconds first")
    parser.add_argument("--load", type=float, default=30, help="seconds of load")
    parser.add_argument("--after", type=float, default=30, help="idle seconds after")
    parser.add_argument("--delay", type=float, default=0.1, help="the model's s per request")
    parser.add_argument("--png", type=Path, default=HERE.parent / "docs" / "ray-autoscaling.png")
    parser.add_argument("--results", type=Path, default=HERE / ".work" / "results")
    args = parser.parse_args()

    import ray
    from ray import serve

    from modelyard.ray import build_app

    scratch = Path(tempfile.mkdtemp(prefix="ray-autoscale-"))
    repository = _repository(scratch / "repo", args.delay)
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths live there
    ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False, _temp_dir=temp)
    try:
        port = procs.free_port()
        serve.start(proxy_location="Disabled")
        serve.run(build_app({"repository": str(repository), "port": port}), name="modelyard")
        series = _step_load(f"http://127.0.0.1:{port}/v2/models/slow/infer", args)
    finally:
        serve.shutdown()
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    summary = _summary(series, args)
    print(json.dumps(summary, indent=2))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    args.results.mkdir(parents=True, exist_ok=True)
    out = args.results / f"ray-autoscale-{stamp}.json"
    settings = {"clients": args.clients, "model_delay_s": args.delay, "autoscaling": SCALING}
    out.write_text(json.dumps({**settings, "summary": summary, "series": series}, indent=2))
    _plot(series, args, summary)
    print(f"wrote {out} and {args.png}")


def _repository(root: Path, delay: float) -> Path:
    folder = root / "slow"
    folder.mkdir(parents=True)
    (folder / "model.py").write_text(MODEL)
    section = ", ".join(f"{key}: {value}" for key, value in SCALING.items())
    (folder / "model.yaml").write_text(
        "runtime: python\n"
        "inputs: [{name: X, datatype: FP32, shape: [1]}]\n"
        "outputs: [{name: Y, datatype: FP32, shape: [1]}]\n"
        f'parameters: {{delay: "{delay}"}}\n'
        f"autoscaling: {{{section}}}\n"
    )
    return root


class Clients:
    """Closed-loop clients on threads: started, stopped, and what they counted."""

    def __init__(self, url: str, count: int) -> None:
        self.url = url
        self.answered = 0
        self.failed = 0
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run) for _ in range(count)]

    def _run(self) -> None:
        with httpx.Client(timeout=120) as http:
            while not self.stop.is_set():
                try:
                    ok = http.post(self.url, json=BODY).status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    self.answered += 1
                else:
                    self.failed += 1

    def start(self) -> None:
        """Start the clients, once."""
        if self.threads[0].ident is None:
            for thread in self.threads:
                thread.start()

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            if thread.is_alive():
                thread.join(timeout=150)


def _step_load(url: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Sample every 0.5 s through idle -> load -> idle; the clients run in the middle."""
    clients = Clients(url, args.clients)
    on, off = args.before, args.before + args.load
    series = []
    started = time.monotonic()
    last = 0
    while (now := time.monotonic() - started) < off + args.after:
        if on <= now < off:
            clients.start()
        if now >= off:
            clients.stop.set()
        states = _states()
        done = clients.answered
        series.append(
            {
                "t": round(now, 2),
                "running": states.get("RUNNING", 0),
                "starting": states.get("STARTING", 0),
                "stopping": states.get("STOPPING", 0),
                "rps": (done - last) / SAMPLE_S,
                "failed": clients.failed,
            }
        )
        last = done
        time.sleep(max(0.0, SAMPLE_S - (time.monotonic() - started - now)))
    clients.finish()
    return series


def _states() -> dict[str, int]:
    from ray import serve

    status = serve.status().applications["modelyard"].deployments["model-slow"]
    return {getattr(state, "value", state): n for state, n in status.replica_states.items()}


def _summary(series: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    on, off = args.before, args.before + args.load

    def first(after: float, test: Any) -> float | None:
        return next((s["t"] - after for s in series if s["t"] >= after and test(s)), None)

    return {
        "load_from_s": on,
        "load_until_s": off,
        "decided_up_after_s": first(on, lambda s: s["running"] + s["starting"] > 1),
        "second_replica_running_after_s": first(on, lambda s: s["running"] > 1),
        "peak_running": max(s["running"] for s in series),
        "back_to_min_after_s": first(
            off, lambda s: s["running"] == SCALING["min_replicas"] and s["stopping"] == 0
        ),
        "failed_requests": series[-1]["failed"],
        "rps_at_one_replica": max((s["rps"] for s in series if on <= s["t"] < on + 2), default=0),
        "rps_peak": max(s["rps"] for s in series),
    }


def _plot(series: list[dict[str, Any]], args: argparse.Namespace, summary: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t"] for s in series]
    fig, replicas = plt.subplots(figsize=(9, 4.2))
    on, off = args.before, args.before + args.load
    replicas.axvspan(on, off, color="0.92", label=f"{args.clients} clients")
    replicas.step(t, [s["running"] for s in series], where="post", color="C0", label="running")
    replicas.step(
        t,
        [s["running"] + s["starting"] for s in series],
        where="post",
        color="C0",
        linestyle=":",
        label="running + starting",
    )
    replicas.axvline(on + SCALING["upscale_delay_s"], color="C2", linestyle="--", linewidth=1)
    replicas.axvline(off + SCALING["downscale_delay_s"], color="C3", linestyle="--", linewidth=1)
    replicas.set_ylim(0, SCALING["max_replicas"] + 0.5)
    replicas.set_xlabel("seconds")
    replicas.set_ylabel("replicas of the model", color="C0")
    rate = replicas.twinx()
    rate.plot(t, [s["rps"] for s in series], color="C1", linewidth=1, label="req/s")
    rate.set_ylabel("requests answered per second", color="C1")
    rate.set_ylim(bottom=0)
    replicas.set_title(
        "modelyard on Ray Serve, step load: autoscaling on the model's queue depth\n"
        f"(target {SCALING['target_ongoing_requests']} per replica; dashed: load start + "
        f"upscale delay {SCALING['upscale_delay_s']} s, load end + downscale delay "
        f"{SCALING['downscale_delay_s']} s)",
        fontsize=9,
    )
    lines = replicas.get_legend_handles_labels()
    more = rate.get_legend_handles_labels()
    replicas.legend(lines[0] + more[0], lines[1] + more[1], loc="upper right", fontsize=8)
    fig.tight_layout()
    args.png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.png, dpi=110)


if __name__ == "__main__":
    main()
