"""What this machine can do: CPU features, and the dtype it computes fastest in.

The same code runs on AVX2 laptops and on AVX-512/AMX servers, where the fast dtype differs: on an Intel Xeon with
AMX a bf16 matmul ran 3.4x faster than float32 (1,089 vs 318 GFLOP/s), on an AMD EPYC with AVX2 only it ran ~35x
slower, because without bf16 instructions PyTorch converts every element. So `compute_dtype('auto')` decides per
machine: no bf16 instructions means float32 without a test; with them, a short matmul of the shape that dominates
a small model's step is timed in both dtypes and the faster one wins. The choice and its reason are recorded by the
stages that use it (train/log.json, eval/metrics.json).
"""

from __future__ import annotations

import functools
import time
from dataclasses import asdict, dataclass
from pathlib import Path

DTYPES = ("auto", "float32", "bfloat16")
BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # Linux names of the CPU features that compute in bf16 natively
BF16_MIN_SPEEDUP = 1.3  # bf16 must beat float32 by this much: it rounds activations to 8 bits of mantissa


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> str:
    """/proc/cpuinfo, read once per process; empty where the file does not exist (not Linux)."""
    try:
        return Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return ""


def _cpuinfo_field(names: tuple[str, ...], cpuinfo: str | None) -> str | None:
    for line in (_cpuinfo() if cpuinfo is None else cpuinfo).splitlines():
        key, _, value = line.partition(":")
        if key.strip() in names:
            return value
    return None


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The CPU's feature flags as Linux reports them (`/proc/cpuinfo`); empty where that file does not exist."""
    return frozenset((_cpuinfo_field(("flags", "Features"), cpuinfo) or "").split())


def cpu_name(cpuinfo: str | None = None) -> str:
    return " ".join((_cpuinfo_field(("model name",), cpuinfo) or "unknown CPU").split())


def has_amx(flags: frozenset[str] | None = None) -> bool:
    """Intel AMX (Sapphire Rapids and later): where llama.cpp's AMX buffers crash (see kit.models.llamacpp)."""
    return "amx_int8" in (cpu_flags() if flags is None else flags)


def cpu_kind(flags: frozenset[str] | None = None) -> str:
    """A short name for the vector units that matter here: 'AMX', 'AVX-512 (bf16)', 'AVX-512', 'AVX2' or 'other'."""
    flags = cpu_flags() if flags is None else flags
    if "amx_bf16" in flags:
        return "AMX"
    if "avx512f" in flags:
        return "AVX-512 (bf16)" if "avx512_bf16" in flags else "AVX-512"
    return "AVX2" if "avx2" in flags else "other"


@dataclass(frozen=True)
class DtypeChoice:
    dtype: str  # float32 | bfloat16
    reason: str
    gflops: dict | None = None  # measured matmul throughput per dtype, when the choice was measured

    def record(self) -> dict:
        return asdict(self)


def matmul_gflops(dtype_name: str, seconds: float = 0.25, m: int = 256, k: int = 640, n: int = 2048) -> float:
    """Throughput of one matmul shape in a dtype, timed for about `seconds` (the MLP projection of a 270M model)."""
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    a @ b  # warm-up: the first call picks and caches a kernel
    count, start = 0, time.perf_counter()
    while True:
        a @ b
        count += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return 2 * m * k * n * count / elapsed / 1e9


def dtype_speeds(rounds: int = 5, seconds: float = 0.05) -> dict[str, float]:
    """Single-core matmul GFLOP/s per dtype, for the dtype choice: each dtype timed in `rounds` short slices taken
    in turn, the best slice of each kept.

    One thread, because the choice needs the ratio of the two, and a multi-threaded matmul on a busy machine
    collapses (its threads wait on each other whenever one is descheduled): on the 2-core AMX machine, with tests
    running beside it, two threads measured bf16 at 1.15x float32 (83 vs 72 GFLOP/s) and kit trained in float32 at
    a fraction of its speed, while one thread measured 3.8-5.3x. Slices in turn and the best of each, so a burst of
    load hurts both dtypes alike and is then dropped.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        best = {"float32": 0.0, "bfloat16": 0.0}
        for r in range(rounds + 1):  # the first round warms up (picks and caches each kernel), not counted
            for name in best:
                g = matmul_gflops(name, seconds if r else 0.01)
                best[name] = max(best[name], g) if r else 0.0
        return best
    finally:
        torch.set_num_threads(threads)


def compute_dtype(requested: str = "auto", device: str = "cpu", flags: frozenset[str] | None = None) -> DtypeChoice:
    """The dtype to load and run the model in, and why. `requested` float32/bfloat16 is honoured as given."""
    if requested not in DTYPES:
        from kit.errors import KitError

        raise KitError(f"dtype='{requested}' is not one of {', '.join(DTYPES)}.")
    flags = cpu_flags() if flags is None else flags
    if requested != "auto":
        slow = requested == "bfloat16" and device == "cpu" and not any(f in flags for f in BF16_FLAGS)
        return DtypeChoice(requested, "set by you" + (
            " (this CPU has no bf16 instructions: expect bf16 to run many times slower than float32)" if slow else ""))
    if device == "cuda":
        return DtypeChoice("bfloat16", "CUDA GPU: bf16 tensor cores")
    return _auto_cpu(frozenset(flags))


@functools.lru_cache(maxsize=4)
def _auto_cpu(flags: frozenset[str]) -> DtypeChoice:
    if not any(f in flags for f in BF16_FLAGS):
        return DtypeChoice("float32", f"this CPU ({cpu_kind(flags)}) has no bf16 instructions "
                                      f"({' / '.join(BF16_FLAGS)}): bf16 would be emulated, many times slower")
    speeds = dtype_speeds()
    g32, g16 = speeds["float32"], speeds["bfloat16"]
    measured = {"float32": round(g32, 1), "bfloat16": round(g16, 1)}
    ratio = g16 / g32
    if ratio >= BF16_MIN_SPEEDUP:
        return DtypeChoice("bfloat16", f"{cpu_kind(flags)}: bf16 matmul measured {ratio:.1f}x faster than float32 "
                                       f"({g16:.0f} vs {g32:.0f} GFLOP/s on one core)", measured)
    return DtypeChoice("float32", f"{cpu_kind(flags)}: bf16 matmul measured only {ratio:.2f}x float32 "
                                  f"({g16:.0f} vs {g32:.0f} GFLOP/s on one core; bf16 needs {BF16_MIN_SPEEDUP}x)",
                       measured)
