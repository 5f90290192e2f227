"""The decision guide as one table of data: condition -> runtime / settings / another system,
each with its reason. `advise.py` computes the facts the conditions read; nothing here runs.

A condition is `fact OP value` (OP: == != >= <= > < in; `in` takes a|b|c; a value written
`{fact}` is that fact), a bare fact (true when truthy) or `not fact`. Every condition of a
rule must hold. Setting values and reasons may name facts in braces: "{physical_cores}".
Facts are listed in docs/advisor.md.

Four tables, read in this order:
  RUNTIME_RULES    the first rule that matches picks the runtime
  SETTING_RULES    every rule that matches for the picked runtime sets its keys
                   (a later rule overrides an earlier one for the same key)
  ELSEWHERE_RULES  every rule that matches names another system; `better` means modelyard
                   cannot meet the goal on this hardware and that system can
  WARNING_RULES    every rule that matches adds a warning (known-bad combinations, risks)
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Facts = Mapping[str, Any]
_TABULAR = "onnx|sklearn|xgboost|lightgbm"
#: Runtimes whose models take a batch dimension the batcher can merge requests along.
_BATCHED = _TABULAR + "|pytorch|tensorflow|openvino"
#: Runtimes whose operators run on torch's (or onnxruntime's) intra-op thread pool.
_TORCH = "pytorch|hf_classifier|sentence"


@dataclass(frozen=True)
class Rule:
    id: str
    when: tuple[str, ...]
    reason: str
    runtime: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    system: str = ""
    better: bool = False
    #: What a measurement on this project's machines showed for the rule (empty: reasoned,
    #: not measured); docs/advisor.md's tables say so per rule.
    measured: str = ""


RUNTIME_RULES: tuple[Rule, ...] = (
    Rule(
        "tensorrt-engine",
        ("format == tensorrt",),
        runtime=None,
        reason="a TensorRT engine runs only inside TensorRT, on the GPU and version it was "
        "built for; modelyard does not embed TensorRT",
    ),
    Rule(
        "gguf",
        ("format == gguf",),
        runtime="llamacpp",
        reason="GGUF is llama.cpp's format: quantized weights mapped from disk, fast CPU "
        "kernels, optional GPU offload",
    ),
    Rule(
        "onnx",
        ("format == onnx",),
        runtime="onnx",
        reason="an ONNX graph runs on onnxruntime (the OpenVINO execution provider where "
        "installed)",
    ),
    Rule(
        "sklearn",
        ("format == sklearn",),
        runtime="sklearn",
        reason="a scikit-learn estimator runs natively; no conversion needed",
    ),
    Rule(
        "xgboost",
        ("format == xgboost",),
        runtime="xgboost",
        reason="an XGBoost model runs on XGBoost's own predictor (in-place, no DMatrix)",
    ),
    Rule(
        "lightgbm",
        ("format == lightgbm",),
        runtime="lightgbm",
        reason="a LightGBM model runs on LightGBM's own predictor",
    ),
    Rule(
        "python",
        ("format == python",),
        runtime="python",
        reason="a model.py (modelyard.Model or TritonPythonModel) runs as its author wrote it",
    ),
    Rule(
        "hf-folder",
        ("format == hf", "task == text-generation"),
        runtime="transformers",
        reason="a Hugging Face causal LM (config.json + safetensors) generates on transformers",
    ),
    Rule(
        "hf-classifier",
        ("format == hf", "task == classifier"),
        runtime="hf_classifier",
        reason="a Hugging Face sequence or token classifier runs on transformers, its labels "
        "from config.json's id2label",
    ),
    Rule(
        "hf-encoder",
        ("format == hf", "task == embedding"),
        runtime="sentence",
        reason="a Hugging Face encoder (a bare *Model or a sentence-transformers folder) "
        "serves pooled sentence embeddings",
    ),
    Rule(
        "torch",
        ("format in torchscript|torch-export",),
        runtime="pytorch",
        reason="TorchScript and torch.export programs run on PyTorch (libtorch's CPU kernels, "
        "as Triton's PyTorch backend runs them)",
    ),
    Rule(
        "torchserve",
        ("format == torchserve",),
        runtime="torchserve",
        reason="a TorchServe archive (.mar) runs its own handler, as TorchServe runs it, in a "
        "worker process",
    ),
    Rule(
        "tensorflow",
        ("format == tensorflow",),
        runtime="tensorflow",
        reason="a TensorFlow SavedModel runs in a TensorFlow session, as TF Serving and "
        "Triton's TensorFlow backend run it",
    ),
    Rule(
        "openvino-ir",
        ("format == openvino",),
        runtime="openvino",
        reason="OpenVINO IR (.xml + .bin) runs on OpenVINO",
    ),
    Rule(
        "unknown",
        (),
        runtime=None,
        reason="no runtime reads this file; see docs/repository.md for the formats served",
    ),
)

SETTING_RULES: tuple[Rule, ...] = (
    # -- ONNX -----------------------------------------------------------------------------
    Rule(
        "onnx-threads",
        ("runtime == onnx", "not instances_pinned"),
        settings={"parameters.intra_op_thread_count": "{physical_cores}"},
        reason="a thread per physical core ({physical_cores}) for each operator; extra "
        "hyper-threads only contend",
        measured="2 cores: a 2.4k-parameter MLP (32→64→4) 12.0k req/s at c=64 with 2 threads "
        "against 9.1k with 1 (same run); a ~10M-parameter MLP within 10% of the best of "
        "instances {1,2} x threads {1,2} x delay {0, 2 ms} in 3 runs",
    ),
    Rule(
        "onnx-instance",
        ("runtime == onnx", "not instances_pinned"),
        settings={"parameters.inter_op_thread_count": 1, "instance_count": 1},
        reason="onnxruntime parallelises inside each operator: one instance, running one "
        "operator at a time, serves each request fastest",
    ),
    Rule(
        "onnx-threads-light",
        (
            "runtime == onnx",
            "not instances_pinned",
            "vector_inputs",
            "params_m >= 0.1",
            "params_m <= 5",
            "physical_cores >= 2",
        ),
        settings={"parameters.intra_op_thread_count": "{loop_free_cores}"},
        reason="a light model on feature vectors ({params} parameters): the event loop's own "
        "work per request (read, parse, answer) bounds its throughput, not the model, so "
        "onnxruntime leaves the loop a core ({loop_free_cores} of {physical_cores} "
        "threads)",
        measured="2 cores: a 1.3M-parameter MLP, 1 thread instead of 2: +5%, +13%, +22% req/s "
        "at c=64 in 3 interleaved runs (docs/benchmarks.md); below 0.1M parameters 2 threads "
        "won (onnx-threads)",
    ),
    Rule(
        "onnx-threads-per-instance",
        ("runtime == onnx", "instances_pinned"),
        settings={
            "parameters.intra_op_thread_count": "{threads_per_instance}",
            "parameters.inter_op_thread_count": 1,
        },
        reason="the config runs {instances} instances: {threads_per_instance} threads each keep "
        "the {physical_cores} physical cores from being oversubscribed",
    ),
    Rule(
        "onnx-fixed-batch",
        ("runtime == onnx", "not dynamic_batch", "goal == throughput"),
        settings={"instance_count": "{cores}", "parameters.intra_op_thread_count": 1},
        reason="the graph's batch dimension is fixed, so requests cannot be merged: {cores} "
        "single-threaded instances run requests side by side",
    ),
    Rule(
        "onnx-openvino",
        ("runtime == onnx", "ep_openvino", "gpus == 0"),
        settings={"parameters.execution_provider": "OpenVINOExecutionProvider"},
        reason="onnxruntime's OpenVINO execution provider is installed and there is no GPU",
    ),
    Rule(
        "onnx-cuda",
        ("runtime == onnx", "ep_cuda", "gpus >= 1"),
        settings={
            "parameters.execution_provider": "CUDAExecutionProvider",
            "parameters.intra_op_thread_count": 1,
        },
        reason="a GPU and onnxruntime's CUDA execution provider: the graph runs on the GPU",
    ),
    # -- PyTorch ---------------------------------------------------------------------------
    Rule(
        "pytorch-threads",
        (f"runtime in {_TORCH}", "not instances_pinned"),
        settings={"parameters.intra_op_thread_count": "{physical_cores}", "instance_count": 1},
        reason="torch parallelises inside each operator: one instance with a thread per "
        "physical core ({physical_cores}); extra hyper-threads only contend",
    ),
    Rule(
        "pytorch-threads-per-instance",
        (f"runtime in {_TORCH}", "instances_pinned"),
        settings={"parameters.intra_op_thread_count": "{threads_per_instance}"},
        reason="the config runs {instances} instances: {threads_per_instance} torch threads "
        "each keep the {physical_cores} physical cores from being oversubscribed",
    ),
    # -- TensorFlow ------------------------------------------------------------------------
    Rule(
        "tensorflow-threads",
        ("runtime == tensorflow", "not instances_pinned"),
        settings={
            "parameters.intra_op_thread_count": "{physical_cores}",
            "parameters.inter_op_thread_count": 1,
            "instance_count": 1,
        },
        reason="TensorFlow parallelises inside each operator: one instance (one session, one "
        "copy of the weights) with a thread per physical core ({physical_cores}) and one "
        "operator at a time",
    ),
    Rule(
        "tensorflow-threads-per-instance",
        ("runtime == tensorflow", "instances_pinned"),
        settings={
            "parameters.intra_op_thread_count": "{threads_per_instance}",
            "parameters.inter_op_thread_count": 1,
        },
        reason="the config runs {instances} instances, each its own session: "
        "{threads_per_instance} threads each keep the {physical_cores} physical cores from "
        "being oversubscribed",
    ),
    # -- OpenVINO IR -----------------------------------------------------------------------
    Rule(
        "openvino-latency",
        ("runtime == openvino", "goal == latency"),
        settings={
            "parameters.PERFORMANCE_HINT": "LATENCY",
            "parameters.INFERENCE_NUM_THREADS": "{physical_cores}",
        },
        reason="latency goal: OpenVINO's LATENCY hint runs each request in one stream on "
        "every physical core ({physical_cores} threads); requests that arrive together "
        "are batched rather than run side by side",
    ),
    Rule(
        "openvino-latency-instance",
        ("runtime == openvino", "goal == latency", "not instances_pinned"),
        settings={"instance_count": 1},
        reason="one stream serves one request at a time: one infer request",
    ),
    Rule(
        "openvino-throughput",
        ("runtime == openvino", "goal == throughput"),
        settings={
            "parameters.PERFORMANCE_HINT": "THROUGHPUT",
            "parameters.INFERENCE_NUM_THREADS": "{physical_cores}",
        },
        reason="throughput goal: OpenVINO's THROUGHPUT hint splits the {physical_cores} "
        "physical cores into streams, one per infer request (instance), so batches run "
        "side by side",
    ),
    Rule(
        "openvino-throughput-instances",
        ("runtime == openvino", "goal == throughput", "not instances_pinned"),
        settings={"instance_count": "{physical_cores}"},
        reason="throughput goal: an infer request per physical core ({physical_cores}), so "
        "the THROUGHPUT hint makes as many streams",
    ),
    # -- batching (models whose artifact takes a batch dimension) ----------------------------
    Rule(
        "batch-latency",
        (f"runtime in {_BATCHED}", "dynamic_batch", "goal == latency"),
        settings={"max_batch_size": "{max_batch}", "dynamic_batching.max_queue_delay_us": 0},
        reason="every input and output has a dynamic first dimension; latency goal: requests "
        "that arrive together run as one batch (up to {max_batch}), none waits for more",
    ),
    Rule(
        "batch-throughput",
        (f"runtime in {_BATCHED}", "dynamic_batch", "goal == throughput"),
        settings={
            "max_batch_size": "{max_batch}",
            "dynamic_batching.max_queue_delay_us": "{batch_delay_us}",
        },
        reason="every input and output has a dynamic first dimension; throughput goal: wait up "
        "to {batch_delay_us} µs to fill batches of up to {max_batch}, so each batch pays "
        "the per-request cost once",
        measured="2 cores: a 200-tree RandomForest (skops) 1.84-2.12k req/s at c=64 with a 2 ms "
        "wait against 0.94-1.07k with none, in 3 runs",
    ),
    # -- scikit-learn, boosters, Python ------------------------------------------------------
    Rule(
        "sklearn-instances",
        ("runtime == sklearn",),
        settings={"instance_count": 1},
        reason="scikit-learn predicts small inputs under the GIL: one instance, and batches "
        "make the numpy work count",
    ),
    Rule(
        "xgboost-latency",
        ("runtime == xgboost", "goal == latency"),
        settings={"parameters.nthread": 1, "instance_count": 1},
        reason="requests are a few rows: one thread, one instance; what arrives together runs "
        "as one batch",
        measured="2 cores: a 300-tree XGBoost, 1 instance x 1 thread: 10.7k req/s at c=64, "
        "c=1 p50 0.49 ms, against 7.0-8.9k and 0.51-1.57 ms for 2 instances",
    ),
    Rule(
        "xgboost-throughput",
        ("runtime == xgboost", "goal == throughput"),
        settings={"parameters.nthread": "{physical_cores}", "instance_count": 1},
        reason="throughput goal: large batches split across {physical_cores} threads",
    ),
    Rule(
        "lightgbm-latency",
        ("runtime == lightgbm", "goal == latency"),
        settings={"parameters.num_threads": 1, "instance_count": "{cores}"},
        reason="requests are a few rows: one thread each, {cores} predictions side by side "
        "(LightGBM releases the GIL while predicting)",
    ),
    Rule(
        "lightgbm-throughput",
        ("runtime == lightgbm", "goal == throughput"),
        settings={"parameters.num_threads": "{physical_cores}", "instance_count": 1},
        reason="throughput goal: large batches split across {physical_cores} threads",
    ),
    Rule(
        "python-instances",
        ("runtime == python",),
        settings={"instance_count": 1},
        reason="a Python model's code may not be thread-safe: one instance unless its config "
        "asks for more",
    ),
    # -- llama.cpp ---------------------------------------------------------------------------
    Rule(
        "llm-threads",
        ("runtime == llamacpp",),
        settings={"parameters.n_threads": "{physical_cores}"},
        reason="generation is memory-bound: one thread per physical core ({physical_cores}); "
        "extra hyper-threads only contend",
    ),
    Rule(
        "llm-context",
        ("runtime == llamacpp", "llm"),
        settings={
            "parameters.n_ctx": "{llm_context}",
            "parameters.n_seq_max": "{llm_slots}",
            "parameters.kv_size": "{llm_cells}",
        },
        reason="{goal} goal: up to {llm_slots} sequences at once (a client waits for KV cells, "
        "never for a slot behind whole generations) share a KV cache of {llm_cells} tokens "
        "({kv_size}) within the {budget_size} budget, each up to {llm_context} tokens "
        "(trained for {trained_context})",
    ),
    Rule(
        "llm-swa-full",
        ("runtime == llamacpp", "llm", "swa_full"),
        settings={"parameters.swa_full": "true"},
        reason="the sliding-window layers keep every token ({swa_extra_size} more): a prompt "
        "prefix longer than the {sliding_window}-token window (a shared system prompt, a "
        "chat's earlier turns) is reused instead of read again",
        measured="2 cores, 8 streamed chats sharing a 1,000-token system prompt on Gemma 3 "
        "270M (window 512), two runs at load 2-3: 44 -> 73 tok/s, TTFT p99 7.0 -> 4.0 s",
    ),
    Rule(
        "llm-embedding",
        ("runtime == llamacpp", "embedding"),
        settings={
            "parameters.embedding": "true",
            "parameters.n_ctx": "{llm_context}",
            "parameters.n_seq_max": "{llm_parallel}",
        },
        reason="an embedding model: inputs of up to {llm_context} tokens, {llm_parallel} "
        "embedded per batch, no KV cache kept between requests",
    ),
)

ELSEWHERE_RULES: tuple[Rule, ...] = (
    Rule(
        "llm-too-big-no-gpu",
        ("llm", "not fits", "gpus == 0"),
        system="vLLM, SGLang or LMDeploy on GPU machines",
        better=True,
        reason="{params_b} B parameters need about {estimate_size} to serve; this machine "
        "has a {budget_size} budget and no GPU",
    ),
    Rule(
        "llm-large-on-cpu",
        ("llm", "fits", "gpus == 0", "params_b >= 30"),
        system="vLLM, SGLang or LMDeploy on GPU machines",
        better=True,
        reason="it fits in memory, but a {params_b} B model decodes at a few tokens per second "
        "at best on CPU (about {token_ms} ms per token here)",
    ),
    Rule(
        "llm-tensor-parallel",
        ("llm", "gpus >= 2", "not fits_gpu", "fits_gpus"),
        system="vLLM or TensorRT-LLM with tensor parallelism",
        better=True,
        reason="{estimate_size} does not fit one GPU ({gpu_size}) but fits the {gpus} GPUs "
        "together ({gpus_size}); tensor parallelism splits each layer across them, "
        "and modelyard runs a model on one device",
    ),
    Rule(
        "llm-multi-node",
        ("llm", "gpus >= 1", "not fits_gpus", "not fits"),
        system="vLLM or SGLang across nodes (pipeline parallel on Ray), deployed with Ray Serve",
        better=True,
        reason="{estimate_size} is more than this machine's GPUs ({gpus_size}) or memory "
        "({budget_size}) hold: it needs several machines",
    ),
    Rule(
        "llm-large-on-gpu",
        ("llm", "gpus >= 1", "fits_gpu", "params_b >= 7"),
        system="vLLM, SGLang or LMDeploy on this GPU",
        better=True,
        reason="a {params_b} B model fits the {gpu_size} GPU, where a GPU-native server "
        "decodes it many times faster than llama.cpp on {physical_cores} CPU cores",
    ),
    Rule(
        "llm-small-on-gpu",
        ("llm", "gpus >= 1", "fits_gpu", "params_b < 7"),
        system="vLLM or SGLang on this GPU",
        better=False,
        reason="on a GPU, paged attention and continuous batching over many sequences reach "
        "more aggregate tokens/s than llama.cpp; for a small model llama.cpp may do",
    ),
    Rule(
        "hf-llm-gpu",
        ("format == hf", "llm", "gpus >= 1"),
        system="vLLM, SGLang or TGI",
        better=True,
        reason="they serve Hugging Face folders on GPUs with paged attention; modelyard's "
        "transformers runtime is CPU-first",
    ),
    Rule(
        "hf-llm-cpu",
        ("format == hf", "llm", "gpus == 0"),
        system="modelyard's llamacpp runtime after converting to GGUF (llama.cpp's "
        "convert_hf_to_gguf.py), or Ollama",
        better=False,
        reason="on CPU, a quantized GGUF decodes several times faster than transformers in fp32",
    ),
    Rule(
        "tensorrt-triton",
        ("format == tensorrt",),
        system="Triton Inference Server with its TensorRT backend",
        better=True,
        reason="Triton loads TensorRT engines natively",
    ),
    Rule(
        "openvino-ovms",
        ("format == openvino",),
        system="OpenVINO Model Server (OVMS)",
        better=False,
        reason="OVMS serves the same IR on the same OpenVINO library, in C++; modelyard's "
        "openvino runtime compiles it the same way (CPU, the goal's performance hint)",
    ),
    Rule(
        "onnx-openvino-ir",
        ("format == onnx", "gpus == 0", "openvino_installed"),
        system="modelyard's openvino runtime after converting to OpenVINO IR",
        better=False,
        reason="OpenVINO's CPU kernels beat onnxruntime's on some graphs and lose on others: "
        "`modelyard tune` converts the model (openvino.convert_model) and measures both "
        "at batch 1 and 64 on this machine",
    ),
    Rule(
        "torch-onnx",
        ("format in torchscript|torch-export",),
        system="modelyard's onnx runtime after torch.onnx.export",
        better=False,
        reason="onnxruntime often runs small graphs faster than torch on CPU, with a smaller "
        "library: `modelyard tune` exports the model (torch.onnx.export) and measures both at "
        "batch 1 and 64 on this machine",
    ),
    Rule(
        "tensorflow-onnx",
        ("format == tensorflow",),
        system="modelyard's onnx runtime after tf2onnx",
        better=False,
        reason="onnxruntime often runs small graphs faster than TensorFlow on CPU, with a far "
        "smaller library; measure both (`modelyard bench`) before converting",
    ),
    Rule(
        "onnx-gpu-tensorrt",
        ("format == onnx", "gpus >= 1", "goal == throughput"),
        system="Triton Inference Server with its TensorRT backend",
        better=False,
        reason="with a GPU, compiling the graph with TensorRT can cut latency further than "
        "onnxruntime's CUDA provider",
    ),
)

WARNING_RULES: tuple[Rule, ...] = (
    Rule(
        "llamacpp-amx-sigill",
        ("runtime == llamacpp", "llamacpp_amx"),
        reason="known-bad here: this CPU has AMX and llama.cpp is (or, built by default with "
        "-march=native, will be) compiled with it; ggml's AMX matmul path dies with "
        "SIGILL at the first decode. Build llama-cpp-python with "
        'CMAKE_ARGS="-DGGML_NATIVE=OFF" and pip --no-cache-dir',
    ),
    Rule(
        "gguf-no-chat-template",
        ("format == gguf", "llm", "not chat_template"),
        reason="the GGUF has no chat template (a base model?): completion works, chat falls "
        "back to a generic template; name one in the model config",
    ),
    Rule(
        "over-budget",
        ("not fits",),
        reason="the estimate ({estimate_size}) is over the memory budget ({budget_size}): "
        "modelyard will refuse to load it under that budget",
    ),
    Rule(
        "slow-tokens",
        ("llm", "latency_ms > 0", "token_ms > {latency_ms}"),
        reason="each generated token takes about {token_ms} ms on this hardware (every weight "
        "is read once per token), over the {latency_ms} ms asked for",
    ),
    Rule(
        "pickle",
        ("container == pickle",),
        reason="a pickle runs code when loaded: serve it only with --trust-pickle and only if "
        "you trust the file, or re-save it with skops",
    ),
    Rule(
        "skops-untrusted",
        ("skops_untrusted",),
        reason="the skops file holds types that neither skops nor modelyard trusts "
        "({skops_untrusted}): it loads only with --trust-pickle (or trust_pickle for this "
        "model), and only if you trust the file",
    ),
    Rule(
        "runtime-missing",
        ("runtime_planned",),
        reason="modelyard has no {runtime} runtime in this build yet",
    ),
    Rule(
        "library-missing",
        ("not runtime_planned", "not runtime_installed", "runtime"),
        reason="the {runtime} runtime's library is not installed: pip install "
        "'modelyard[{runtime_extra}]'",
    ),
)


# ---- evaluation --------------------------------------------------------------------------


def matches(rule: Rule, facts: Facts) -> bool:
    return all(holds(condition, facts) for condition in rule.when)


def holds(condition: str, facts: Facts) -> bool:
    parts = condition.split()
    if len(parts) == 1:
        return bool(facts.get(parts[0]))
    if len(parts) == 2 and parts[0] == "not":
        return not facts.get(parts[1])
    name, op, raw = parts
    value = facts.get(name)
    if op == "in":
        return str(value) in raw.split("|")
    other = resolve(raw, facts) if raw.startswith("{") else _literal(raw)
    if op in ("==", "!="):
        return bool(value == other) == (op == "==")
    try:
        return value is not None and other is not None and bool(_ORDER[op](value, other))
    except TypeError:
        return False


_ORDER = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}


def _literal(raw: str) -> Any:
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(raw, raw)


def resolve(value: Any, facts: Facts) -> Any:
    """A setting's value: "{fact}" is the fact itself, anything else as written."""
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return facts.get(value[1:-1])
    return value


def explain(template: str, facts: Facts) -> str:
    return template.format_map(_Shown(facts))


class _Shown(dict[str, Any]):
    def __init__(self, facts: Facts) -> None:
        super().__init__(facts)

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"  # left visible, so a missing fact shows (and tests catch it)


ALL_RULES = {
    "runtime": RUNTIME_RULES,
    "settings": SETTING_RULES,
    "elsewhere": ELSEWHERE_RULES,
    "warnings": WARNING_RULES,
}


def markdown() -> str:
    """The four tables as Markdown (docs/advisor.md embeds this; a test keeps them equal)."""
    out = []
    for section, table in ALL_RULES.items():
        out += [
            f"#### {section}",
            "",
            "| rule | when | then | why | measured |",
            "|---|---|---|---|---|",
        ]
        out += [
            f"| `{r.id}` | {_cell(' and '.join(r.when) or 'always')} | {_cell(_then(r))} "
            f"| {_cell(r.reason)} | {_cell(r.measured) or '—'} |"
            for r in table
        ]
        out.append("")
    return "\n".join(out)


def _then(rule: Rule) -> str:
    if rule.settings:
        return ", ".join(f"{k} = {v}" for k, v in rule.settings.items())
    if rule.system:
        return f"{rule.system}{' (better here)' if rule.better else ''}"
    if rule in RUNTIME_RULES:
        return f"runtime {rule.runtime or 'none'}"
    return "warn"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


if __name__ == "__main__":  # pragma: no cover - regenerates the tables in docs/advisor.md
    print(markdown())
