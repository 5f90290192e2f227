"""What this machine offers: cores, memory, instruction sets (and whether the OS lets them be
used), GPUs (found without torch: nvidia-smi, /proc/driver/nvidia, sysfs), the runtimes that
are installed and onnxruntime's execution providers.

`probe()` reads the machine once per process; tests build a `Hardware` themselves.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib
import importlib.util
import os
import platform
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelyard.threads import LLAMA_CPP_LOCK

# modelyard runtime (or peer system) -> the Python module that shows it is installed
LIBRARIES: dict[str, str] = {
    "onnx": "onnxruntime",
    "sklearn": "sklearn",
    "xgboost": "xgboost",
    "lightgbm": "lightgbm",
    "llamacpp": "llama_cpp",
    "openvino": "openvino",
    "pytorch": "torch",
    "torchserve": "torch",  # custom handlers need torch; default ones the torchserve package
    "tensorflow": "tensorflow",
    "transformers": "transformers",
    "hf_classifier": "transformers",
    "sentence": "onnxruntime",
    "vllm": "vllm",
    "tensorrt": "tensorrt",
}
_GPU_VENDORS = {"0x10de": "nvidia", "0x1002": "amd"}


@dataclass(frozen=True)
class GPU:
    name: str
    vendor: str  # nvidia | amd
    memory_bytes: int | None = None


@dataclass
class Hardware:
    cores: int
    memory_bytes: int
    physical_cores: int = 0
    memory_available_bytes: int = 0
    cpu_flags: frozenset[str] = frozenset()
    #: instruction sets the CPU reports *and* the OS lets this process use
    isa: dict[str, bool] = field(default_factory=dict)
    gpus: list[GPU] = field(default_factory=list)
    runtimes: dict[str, bool] = field(default_factory=dict)
    onnx_providers: list[str] = field(default_factory=list)
    #: the features the installed llama.cpp was compiled with (None: not installed)
    llamacpp_features: frozenset[str] | None = None
    machine: str = ""
    #: probed: ask installed libraries about themselves when first needed
    lazy_libraries: bool = False

    def __post_init__(self) -> None:
        self.physical_cores = self.physical_cores or self.cores
        self.memory_available_bytes = self.memory_available_bytes or self.memory_bytes

    def installed(self, runtime: str) -> bool:
        return runtime == "python" or self.runtimes.get(runtime, False)

    def libraries_for(self, runtime: str) -> None:
        """Fill in what an installed runtime library reports about itself. It is imported only
        when a model for it is advised — serving that model imports it anyway."""
        if not self.lazy_libraries or not self.runtimes.get(runtime):
            return
        if runtime == "onnx" and not self.onnx_providers:
            self.onnx_providers = _onnx_providers()
        elif runtime == "llamacpp" and self.llamacpp_features is None:
            # models are advised on several threads at once, and llama.cpp writes its system
            # info into one static buffer (see the lock)
            with LLAMA_CPP_LOCK:
                if self.llamacpp_features is None:
                    self.llamacpp_features = _llamacpp_features()

    def to_json(self) -> dict[str, Any]:
        return {
            "cores": self.cores,
            "physical_cores": self.physical_cores,
            "memory_bytes": self.memory_bytes,
            "memory_available_bytes": self.memory_available_bytes,
            "isa": dict(sorted(self.isa.items())),
            "gpus": [
                {"name": g.name, "vendor": g.vendor, "memory_bytes": g.memory_bytes}
                for g in self.gpus
            ],
            "runtimes": dict(sorted(self.runtimes.items())),
            "onnx_providers": list(self.onnx_providers),
            "llamacpp_features": sorted(self.llamacpp_features)
            if self.llamacpp_features is not None
            else None,
            "machine": self.machine,
        }


Runner = Callable[[list[str]], str]


@functools.lru_cache(maxsize=1)
def probe() -> Hardware:
    """This machine, read once per process."""
    return probe_at(Path("/"))


def probe_at(root: Path, run: Runner | None = None, import_libraries: bool = True) -> Hardware:
    """The machine whose /proc and /sys are under `root` (tests pass a fake tree); with
    `import_libraries`, installed runtimes are asked about themselves when first needed."""
    cpuinfo = _read(root / "proc/cpuinfo")
    flags = _flags(cpuinfo)
    total, available = _memory(root)
    runtimes = {
        name: importlib.util.find_spec(module) is not None for name, module in LIBRARIES.items()
    }
    return Hardware(
        cores=_cores(root),
        physical_cores=_physical_cores(cpuinfo),
        memory_bytes=total,
        memory_available_bytes=available,
        cpu_flags=flags,
        isa=_isa(flags, root == Path("/")),
        gpus=_gpus(root, run or _run),
        runtimes=runtimes,
        machine=platform.machine(),
        lazy_libraries=import_libraries,
    )


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


# ---- CPU -----------------------------------------------------------------------------------


def _flags(cpuinfo: str) -> frozenset[str]:
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def _cores(root: Path) -> int:
    cores = len(os.sched_getaffinity(0)) if root == Path("/") else 0
    cores = cores or _read(root / "proc/cpuinfo").count("processor\t:") or os.cpu_count() or 1
    quota = _read(root / "sys/fs/cgroup/cpu.max").split()
    if len(quota) == 2 and quota[0].isdigit():
        cores = max(1, min(cores, int(quota[0]) // max(1, int(quota[1]))))
    return cores


def _physical_cores(cpuinfo: str) -> int:
    pairs, physical = set(), ""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "physical id":
            physical = value.strip()
        elif key.strip() == "core id":
            pairs.add((physical, value.strip()))
    return len(pairs)


def _isa(flags: frozenset[str], this_machine: bool) -> dict[str, bool]:
    amx = "amx_tile" in flags and bool(flags & {"amx_int8", "amx_bf16"})
    return {
        "avx2": "avx2" in flags,
        "avx512": "avx512f" in flags,
        "avx512_vnni": "avx512_vnni" in flags,
        "amx": amx and (not this_machine or _amx_permitted()),
    }


def _amx_permitted() -> bool:
    """Ask Linux for AMX tile state (arch_prctl ARCH_REQ_XCOMP_PERM, XTILEDATA): the CPU flag
    alone does not mean a process may use AMX."""
    if platform.machine() != "x86_64":
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.syscall(158, 0x1023, 18)) == 0
    except (OSError, AttributeError):
        return False


# ---- memory --------------------------------------------------------------------------------


def _memory(root: Path) -> tuple[int, int]:
    values = {}
    for line in _read(root / "proc/meminfo").splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[key] = int(parts[0]) * 1024
    total = values.get("MemTotal", 0)
    available = values.get("MemAvailable", total)
    limit = _read(root / "sys/fs/cgroup/memory.max").strip()
    if limit.isdigit() and 0 < int(limit) < total:
        total, available = int(limit), min(available, int(limit))
    return total, available


# ---- GPUs ----------------------------------------------------------------------------------


def _run(command: list[str]) -> str:
    if shutil.which(command[0]) is None:
        return ""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout if done.returncode == 0 else ""


def _gpus(root: Path, run: Runner) -> list[GPU]:
    return _nvidia_smi(run) or _proc_nvidia(root) or _sysfs_gpus(root)


def _nvidia_smi(run: Runner) -> list[GPU]:
    out = run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"])
    gpus = []
    for line in out.splitlines():
        name, _, memory = line.rpartition(",")
        if name.strip():
            mib = memory.strip()
            gpus.append(GPU(name.strip(), "nvidia", int(mib) * 2**20 if mib.isdigit() else None))
    return gpus


def _proc_nvidia(root: Path) -> list[GPU]:
    gpus = []
    for info in sorted((root / "proc/driver/nvidia/gpus").glob("*/information")):
        model = next(
            (
                line.partition(":")[2].strip()
                for line in _read(info).splitlines()
                if line.startswith("Model")
            ),
            "NVIDIA GPU",
        )
        gpus.append(GPU(model, "nvidia"))
    return gpus


def _sysfs_gpus(root: Path) -> list[GPU]:
    gpus = []
    for device in sorted((root / "sys/class/drm").glob("card[0-9]*/device")):
        vendor = _GPU_VENDORS.get(_read(device / "vendor").strip())
        if vendor is None:
            continue  # integrated graphics do not serve models here
        vram = _read(device / "mem_info_vram_total").strip()
        gpus.append(
            GPU(
                f"{vendor.upper()} GPU {_read(device / 'device').strip()}",
                vendor,
                int(vram) if vram.isdigit() else None,
            )
        )
    return gpus


# ---- runtimes ------------------------------------------------------------------------------


def _onnx_providers() -> list[str]:
    try:
        ort = importlib.import_module("onnxruntime")
        return list(ort.get_available_providers())
    except Exception:  # a broken install is reported as no providers
        return []


def _llamacpp_features() -> frozenset[str] | None:
    """The features llama.cpp reports as compiled in ('AMX_INT8 = 1' -> AMX_INT8)."""
    with contextlib.suppress(Exception):
        llama = importlib.import_module("llama_cpp")
        text = llama.llama_print_system_info().decode(errors="replace")
        return frozenset(
            part.split("=")[0].rpartition(":")[2].strip()
            for part in text.split("|")
            if part.strip().endswith("= 1")
        )
    return None
