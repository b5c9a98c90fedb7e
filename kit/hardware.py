"""What this machine can do: CPU features, and the dtype it computes fastest in.

The same code runs on AVX2 laptops and on AVX-512/AMX servers, where the fast dtype differs: on an Intel Xeon with
AMX a bf16 matmul ran 3.4x faster than float32 (1,089 vs 318 GFLOP/s), on an AMD EPYC with AVX2 only it ran ~35x
slower, because without bf16 instructions PyTorch converts every element. So `compute_dtype('auto')` decides per
machine: no bf16 instructions means float32 without a test; with them, a short matmul of the shape that dominates
a small model's step is timed in both dtypes and the faster one wins. The choice and its reason are recorded by the
stages that use it (train/log.json, eval/metrics.json).
"""

from __future__ import annotations

import contextlib
import functools
import os
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



def _cpu_seconds(cpus: frozenset[int]) -> tuple[float, float] | None:
    """(CPU-seconds the cores in `cpus` have been busy since boot, CPU-seconds of this process); None without
    /proc/stat (not Linux). Steal time counts as busy: a core the hypervisor gives to another tenant stalls a thread
    team the same way."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    busy = 0
    for line in lines:
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
            busy += user + nice + system + irq + softirq + steal
    t = os.times()
    return busy / os.sysconf("SC_CLK_TCK"), t.user + t.system


class ThreadGovernor:
    """Keeps torch's thread count at the cores other programs leave free (training with `threads: 0`).

    PyTorch's CPU ops run on an OpenMP thread team that splits every op evenly and waits for its slowest member. When
    another program holds one of the cores, the thread on that core is descheduled in the middle of each op while its
    partners spin: a training step on 2 cores went from 0.9 s to 7.6 s with one spinning process beside it, against
    1.4 s on one thread (bench/busy_cores.py, AMX machine). Letting waiting threads sleep instead
    (OMP_WAIT_POLICY=PASSIVE) fixes the busy case but cost 60% on a quiet machine, so kit keeps the default policy and
    adapts the thread count: after each step it reads how much CPU time other programs took on this process's cores
    (/proc/stat minus this process's own time), drops a thread per core they kept busy for `down_after` steps in a
    row, and adds them back once the cores have been free for `up_after` steps. Every change is recorded.
    """

    def __init__(self, threads: int, down_after: int = 2, up_after: int = 5):
        self.cpus = frozenset(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else frozenset()
        self.most = max(1, threads)
        self.down_after, self.up_after = down_after, up_after
        self.changes: list[dict] = []
        self._streak, self._want = 0, self.most
        self._mark = self._sample()

    def _sample(self):
        seconds = _cpu_seconds(self.cpus) if self.cpus else None
        return None if seconds is None else (time.monotonic(), *seconds)

    def others(self) -> float | None:
        """Cores' worth of CPU time other programs used on this process's cores since the last call."""
        now = self._sample()
        if now is None or self._mark is None:
            return None
        (t0, busy0, own0), (t1, busy1, own1) = self._mark, now
        self._mark = now
        if t1 - t0 < 0.05:  # too short to read at the kernel's 10 ms tick
            return None
        return max(0.0, ((busy1 - busy0) - (own1 - own0)) / (t1 - t0))

    def wanted(self, others: float) -> int:
        """Threads for the free cores: a core counts as taken when other programs used half of one or more (two
        threads thrashing beside one spinning process leave it 0.55-0.8 of a core; an idle desktop takes < 0.2)."""
        return max(1, min(self.most, len(self.cpus) - int(others + 0.5)))

    def look(self, sample_s: float = 0.3) -> tuple[int, float | None]:
        """(threads for the free cores, other programs' load in cores) from a short look at the machine, taken while
        this process does nothing."""
        self._mark = self._sample()
        time.sleep(sample_s)
        others = self.others()
        return (self.most if others is None else self.wanted(others)), others

    def start(self, sample_s: float = 0.3) -> int:
        """Set torch's thread count from a short look at the machine (nothing of ours running); returns it."""
        import torch

        threads, others = self.look(sample_s)
        torch.set_num_threads(threads)
        self._want = threads
        if threads < self.most:
            self._record(0, threads, others)
        return threads

    def after_step(self, step: int) -> int | None:
        """Called after each training step; returns the new thread count when it changed."""
        import torch

        others = self.others()
        if others is None:
            return None
        current = torch.get_num_threads()
        want = self.wanted(others)
        if want == current:
            self._streak = 0
            return None
        self._streak = self._streak + 1 if want == self._want else 1
        self._want = want
        if self._streak < (self.down_after if want < current else self.up_after):
            return None
        torch.set_num_threads(want)
        self._streak = 0
        self._record(step, want, others)
        return want

    def _record(self, step: int, threads: int, others: float | None):
        why = (f"other programs used {others:.1f} of this process's {len(self.cpus)} cores" if others is not None
               else "")
        self.changes.append({"step": step, "threads": threads, "why": why})
        print(f"threads: {threads} (step {step}; {why})", flush=True)


def free_threads(most: int | None = None, sample_s: float = 0.3) -> int:
    """Threads for the cores other programs leave free now, at most `most` (default: this process's cores): for
    llama.cpp, whose thread team stalls the same way (a q8_0 GGUF's prompts and a greedy answer took 5.3 s on 2
    threads beside one busy program, 2.6 s on one, 1.5 s on 2 threads of a quiet machine; AMX, 2 cores)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads, others = ThreadGovernor(most or cpus).look(sample_s)
    if threads < (most or cpus):
        print(f"threads: {threads} for llama.cpp (other programs used {others:.1f} of this process's {cpus} cores)",
              flush=True)
    return threads


_ACTIVE: ThreadGovernor | None = None  # the governor of the stage running in this process, if any


@contextlib.contextmanager
def governed(device: str = "cpu"):
    """Within the block, torch's threads follow the cores other programs leave free (CPU only; loops call `paced`);
    afterwards the count it started with is restored. Yields the governor (None on GPU or when one is active)."""
    global _ACTIVE
    import torch

    if device != "cpu" or _ACTIVE is not None:
        yield None
        return
    before = torch.get_num_threads()
    _ACTIVE = ThreadGovernor(before)
    try:
        _ACTIVE.start()
        yield _ACTIVE
    finally:
        _ACTIVE = None
        torch.set_num_threads(before)


def paced(items):
    """`items`, with the active governor (if any) checking the machine between them."""
    for n, item in enumerate(items):
        if n and _ACTIVE is not None:
            _ACTIVE.after_step(n)
        yield item


def thread_changes() -> list[dict]:
    """What the active governor changed so far (the list it keeps adding to), or [] without one."""
    return _ACTIVE.changes if _ACTIVE is not None else []
