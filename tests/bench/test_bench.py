"""`modelyard bench` against the demo server (iris_onnx and Gemma 3 270M), through the real
command: short steps over KServe HTTP, gRPC and streamed OpenAI, the files it writes, the open
loop, `--compare`, and the errors a user gets for what cannot run."""

from __future__ import annotations

import csv
import importlib.util
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result

from modelyard.cli import main
from tests.server_process import ServerProcess, free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

PNG = b"\x89PNG\r\n\x1a\n"
STEP_FIELDS = {"label", "mode", "load", "seconds", "requests", "ok", "errors", "req_s"}
STEP_FIELDS |= {"latency_ms", "latencies_ms"}
LLM_FIELDS = {"ttft_ms", "itl_ms", "output_tokens", "output_tokens_s", "prompt_tokens_mean"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    if importlib.util.find_spec("llama_cpp") is None:  # importing it leaks /dev/null handles
        pytest.skip("llama-cpp-python is not installed")
    cache = tmp_path_factory.mktemp("cache")
    log = Path(tmp_path_factory.mktemp("bench-logs")) / "server.log"
    with ServerProcess(env={"MODELYARD_CACHE": str(cache)}, log_path=log) as process:
        yield process


def bench(server: ServerProcess, *args: str) -> Result:
    command = ["bench", *args, "--url", server.url, "--grpc-url", server.grpc_addr]
    return CliRunner().invoke(main, command, catch_exceptions=False)


def result_of(folder: Path) -> dict[str, Any]:
    result: dict[str, Any] = orjson.loads((folder / "result.json").read_bytes())
    return result


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's header, which must be one."""
    data = path.read_bytes()
    assert data[:8] == PNG, f"{path.name} is not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def check_step(step: dict[str, Any]) -> None:
    assert step.keys() >= STEP_FIELDS
    assert step["ok"] == step["requests"] > 0 and step["errors"] == {}
    assert step["req_s"] > 0
    latency = step["latency_ms"]
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
    assert len(step["latencies_ms"]) == step["ok"]


def test_kserve_http_sweep_prints_the_table_and_writes_every_file(
    demo: ServerProcess, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    args = ["iris_onnx", "--concurrency", "1,4", "--duration", "0.8", "--warmup", "0.2"]
    done = bench(demo, *args, "--out", str(out))
    assert done.exit_code == 0, done.output
    lines = done.output.splitlines()
    assert lines[0].split()[:5] == ["step", "req/s", "p50", "ms", "p90"]
    assert lines[1].startswith("c=1") and lines[2].startswith("c=4")
    result = result_of(out)
    assert result["format"] == "modelyard-bench/1"
    assert (result["model"], result["protocol"], result["llm"]) == (
        "iris_onnx",
        "kserve-http",
        False,
    )
    assert [s["label"] for s in result["steps"]] == ["c=1", "c=4"]
    for step in result["steps"]:
        check_step(step)
    timeline = result["server"]["timeline"]
    assert (
        timeline
        and {"t", "step", "batch_mean", "executions_s", "queue_depth"} <= timeline[0].keys()
    )
    assert any(p["batch_mean"] and p["batch_mean"] >= 1 for p in timeline)
    with (out / "result.csv").open() as rows:
        table = list(csv.DictReader(rows))
    assert [r["label"] for r in table] == ["c=1", "c=4"]
    assert float(table[0]["req_s"]) == result["steps"][0]["req_s"]
    for name in ("latency_throughput", "latency_cdf", "server_batches"):
        width, height = png_size(out / f"{name}.png")
        assert width > 100 and height > 100
    assert not (out / "ttft_itl.png").exists()  # not a text generator


def test_kserve_grpc_open_loop_sends_at_the_rate(demo: ServerProcess, tmp_path: Path) -> None:
    args = ["iris_onnx", "--protocol", "kserve-grpc", "--rate", "40", "--arrival", "fixed"]
    done = bench(demo, *args, "--duration", "1", "--warmup", "0", "--out", str(tmp_path))
    assert done.exit_code == 0, done.output
    result = result_of(tmp_path)
    assert result["protocol"] == "kserve-grpc" and result["url"] == demo.grpc_addr
    (step,) = result["steps"]
    assert step["label"] == "rate=40/s" and step["mode"] == "rate"
    assert step["requests"] in (40, 41)  # one request every 25 ms for 1 s, whatever the answers
    check_step(step)


def test_synthetic_batches_and_a_request_file(demo: ServerProcess, tmp_path: Path) -> None:
    done = bench(demo, "iris_onnx", "--batch", "8", "--requests", "10", "--warmup", "0")
    assert done.exit_code == 0, done.output
    assert done.output.splitlines()[1].split()[-1] == "0"  # no errors: [8, 4] fits x [-1, 4]
    for model, extra in (("wordcount", []), ("gemma3", ["--output-tokens", "4"])):
        out = tmp_path / model  # BYTES inputs; a text generator over KServe (sampling_parameters)
        args = [model, "--protocol", "kserve-http", "--requests", "3", "--warmup", "0", *extra]
        done = bench(demo, *args, "--out", str(out))
        assert done.exit_code == 0, done.output
        assert result_of(out)["steps"][0]["ok"] == 3 and not result_of(out)["llm"]
    request = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
    good = tmp_path / "good.json"
    good.write_bytes(orjson.dumps(request))
    for protocol in ("kserve-http", "kserve-grpc"):
        out = tmp_path / protocol
        args = ["--input", str(good), "--requests", "5", "--warmup", "0", "--out", str(out)]
        done = bench(demo, "iris_onnx", "--protocol", protocol, *args)
        assert done.exit_code == 0, done.output
        assert result_of(out)["steps"][0]["ok"] == 5


def test_failed_requests_are_counted_by_kind(demo: ServerProcess, tmp_path: Path) -> None:
    request = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}
    bad = tmp_path / "bad.json"
    bad.write_bytes(orjson.dumps(request))
    for protocol, kind in (("kserve-http", "HTTP 400"), ("kserve-grpc", "INVALID_ARGUMENT")):
        out = tmp_path / protocol
        args = ["--input", str(bad), "--requests", "3", "--warmup", "0", "--out", str(out)]
        done = bench(demo, "iris_onnx", "--protocol", protocol, *args)
        assert done.exit_code == 0, done.output
        (step,) = result_of(out)["steps"]
        assert step["errors"] == {kind: 3} and step["ok"] == 0 and step["latency_ms"] is None
        assert f"3 {kind}" in done.output


def test_openai_streaming_measures_ttft_itl_and_tokens(demo: ServerProcess, tmp_path: Path) -> None:
    args = ["gemma3", "--concurrency", "2", "--requests", "2", "--warmup", "0"]
    args += ["--prompt-tokens", "16", "--output-tokens", "8", "--out", str(tmp_path)]
    done = bench(demo, *args)
    assert done.exit_code == 0, done.output
    assert "TTFT p50" in done.output.splitlines()[0]
    result = result_of(tmp_path)
    assert (result["protocol"], result["llm"]) == ("openai", True)  # picked for a text generator
    (step,) = result["steps"]
    check_step(step)
    assert step.keys() >= LLM_FIELDS
    assert step["output_tokens"] == 16  # 8 each: ignore_eos holds the length
    assert 10 <= step["prompt_tokens_mean"] <= 24
    assert step["ttft_ms"]["p50"] < step["latency_ms"]["p50"]
    assert len(step["ttfts_ms"]) == 2 and len(step["itls_ms"]) >= 2
    assert step["output_tokens_s"] > 0
    timeline = result["server"]["timeline"]
    assert any(p.get("step_tokens_mean") for p in timeline)
    assert {"running", "waiting", "generated_tokens_s"} <= timeline[-1].keys()
    for name in ("latency_throughput", "latency_cdf", "ttft_itl", "server_batches"):
        assert min(png_size(tmp_path / f"{name}.png")) > 100


def test_compare_two_runs(demo: ServerProcess, tmp_path: Path) -> None:
    for name, batch in (("a", "1"), ("b", "16")):
        args = [
            "--batch",
            batch,
            "--requests",
            "20",
            "--warmup",
            "0",
            "--out",
            str(tmp_path / name),
        ]
        assert bench(demo, "iris_onnx", "--concurrency", "1,2", *args).exit_code == 0
    out = tmp_path / "both"
    runs = [str(tmp_path / "a" / "result.json"), str(tmp_path / "b" / "result.json")]
    done = CliRunner().invoke(main, ["bench", "--compare", *runs, "--out", str(out)])
    assert done.exit_code == 0, done.output
    rows = [line.split() for line in done.output.splitlines() if line.startswith("c=")]
    assert [r[:2] for r in rows[:3]] == [["c=1", "req/s"], ["c=1", "p50"], ["c=1", "p99"]]
    assert len(rows) == 6 and all(r[-1].endswith("x") for r in rows)
    a = result_of(tmp_path / "a")["steps"][0]["req_s"]
    b = result_of(tmp_path / "b")["steps"][0]["req_s"]
    assert rows[0][2:5] == [f"{a:.2f}", f"{b:.2f}", f"{b / a:.2f}x"]
    assert min(png_size(out / "compare.png")) > 100


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "model 'nope'"),
        (["iris_onnx", "--concurrency", "0"], "--concurrency values must be above 0"),
        (["iris_onnx", "--concurrency", "a,b"], "--concurrency takes whole numbers"),
        (["iris_onnx", "--concurrency", "2", "--rate", "5"], "not both"),
        (["iris_onnx", "--protocol", "openai"], "not a text generator"),
        (["iris_onnx", "--duration", "0"], "--duration above 0"),
        (["iris_onnx", "--batch", "0"], "--batch must be 1 or more"),
        (["iris_onnx", "--input", "missing.json"], "no such file"),
        ([], "which model?"),
    ],
)
def test_what_cannot_run_says_what_to_change(
    demo: ServerProcess, args: list[str], message: str
) -> None:
    done = bench(demo, *args)
    assert done.exit_code == 1
    assert done.output.startswith("error: ") and message in done.output


def test_no_server_and_files_that_are_not_results(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = CliRunner().invoke(main, ["bench", "iris_onnx", "--url", url])
    assert done.exit_code == 1 and "no server answers at" in done.output
    other = tmp_path / "other.json"
    other.write_text('{"inputs": []}')
    done = CliRunner().invoke(main, ["bench", "--compare", str(other), str(other)])
    assert done.exit_code == 1 and "is not a result of `modelyard bench`" in done.output
    not_json = tmp_path / "request.json"
    not_json.write_text("{")
    done = CliRunner().invoke(main, ["bench", "--input", str(not_json), "x", "--url", url])
    assert done.exit_code == 1 and "is not JSON" in done.output


def test_a_server_with_api_keys(model_repo: Path, tmp_path: Path) -> None:
    args = (str(model_repo), "--model-control-mode", "explicit", "--load-model", "addsub")
    with ServerProcess(*args, "--api-key", "sesame", api_key="sesame") as server:
        done = bench(server, "addsub", "--requests", "3", "--warmup", "0")
        assert done.exit_code == 1 and "wants an API key" in done.output
        for protocol in ("kserve-http", "kserve-grpc"):
            out = tmp_path / protocol
            keyed = ["--api-key", "sesame", "--protocol", protocol, "--out", str(out)]
            done = bench(server, "addsub", "--requests", "3", "--warmup", "0", *keyed)
            assert done.exit_code == 0, done.output
            result = result_of(out)
            assert result["steps"][0]["ok"] == 3
            assert result["server"]["error"] == ""  # /metrics was read with the key too


def test_without_matplotlib_the_files_but_plots_say_how_to_install(
    demo: ServerProcess, tmp_path: Path
) -> None:
    hide = "import sys; sys.modules['matplotlib'] = None; from modelyard.cli import main; main()"
    args = ["bench", "iris_onnx", "--url", demo.url, "--requests", "5", "--warmup", "0"]
    done = subprocess.run(
        [sys.executable, "-c", hide, *args, "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'modelyard[bench]'" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.csv", "result.json"]
