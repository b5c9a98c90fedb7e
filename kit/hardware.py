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
    """(CPU-seconds the cores in `cpus` have been busy since boot, CPU-seconds of this process, all its threads);
    None without /proc/stat (not Linux). Steal time counts as busy: a core the hypervisor gives to another tenant
    stalls a thread team the same way. Niced time does not (unless kit itself runs niced): a low-priority job yields
    its core to kit's threads, so it causes no stall."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    count_nice = os.nice(0) > 0
    busy = 0
    for line in lines:
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
            busy += user + system + irq + softirq + steal + (nice if count_nice else 0)
    t = os.times()
    return busy / os.sysconf("SC_CLK_TCK"), t.user + t.system


_BASELINE_THREADS: int | None = None


def baseline_threads() -> int:
    """torch's thread count before any governor changed it in this process (torch's default, or what you set before
    the first stage ran): what a governor starts from, so one busy moment never caps the runs after it."""
    global _BASELINE_THREADS
    import torch

    if _BASELINE_THREADS is None:
        _BASELINE_THREADS = torch.get_num_threads()
    return _BASELINE_THREADS


class ThreadGovernor:
    """Keeps torch's thread count at the cores other programs leave free (training and evaluation with `threads: 0`).

    PyTorch's CPU ops run on an OpenMP thread team that splits every op evenly and waits for its slowest member. When
    another program holds one of the cores, the thread on that core is descheduled in the middle of each op while its
    partners spin: a training step on 2 cores went from 0.9 s to 12.7-19.7 s with one spinning process beside it,
    against 1.3-1.4 s on one thread (bench/busy_cores.py, AMX machine). Letting waiting threads sleep instead
    (OMP_WAIT_POLICY=PASSIVE) fixes the busy case but cost 60% on a quiet machine, so kit keeps the default policy and
    adapts the thread count: it reads how much CPU time other programs took on this process's cores (/proc/stat
    minus this process's own time) over windows of at least `window_s`, lowers the count after `down_after` readings
    in a row that want fewer threads (to the mildest of them; after one reading if it covered `LONG_WINDOW_S` or
    more), and raises it after `up_after` readings in a row that want more. Every change is recorded.
    """

    LONG_WINDOW_S = 2.0

    def __init__(self, threads: int, down_after: int = 2, up_after: int = 5, window_s: float = 0.3):
        self.cpus = frozenset(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else frozenset()
        self.most = max(1, threads)
        self.down_after, self.up_after, self.window_s = down_after, up_after, window_s
        self.changes: list[dict] = []
        self.calls = 0  # after_step calls so far
        self._pending: list[int] = []  # consecutive readings that want a change in one direction
        self._window = 0.0  # seconds the last reading covered
        self._mark = self._sample()

    def _sample(self):
        seconds = _cpu_seconds(self.cpus) if self.cpus else None
        return None if seconds is None else (time.monotonic(), *seconds)

    @staticmethod
    def _load(a, b) -> float:
        """Cores' worth of CPU time other programs used between two samples."""
        (t0, busy0, own0), (t1, busy1, own1) = a, b
        return max(0.0, ((busy1 - busy0) - (own1 - own0)) / (t1 - t0))

    def others(self) -> float | None:
        """Cores' worth of CPU time other programs used on this process's cores since the last reading; None until
        `window_s` has passed (shorter windows are noise at the kernel's 10 ms tick), the window then keeps growing."""
        now = self._sample()
        if now is None or self._mark is None or now[0] - self._mark[0] < self.window_s:
            return None
        load, self._window, self._mark = self._load(self._mark, now), now[0] - self._mark[0], now
        return load

    def wanted(self, others: float) -> int:
        """Threads for the free cores: a core counts as taken when other programs used half of one or more (two
        threads thrashing beside one spinning process leave it 0.55-0.8 of a core; an idle desktop takes < 0.2)."""
        return max(1, min(self.most, len(self.cpus) - int(others + 0.5)))

    def look(self, sample_s: float = 0.4) -> tuple[int, float | None]:
        """(threads for the free cores, other programs' load in cores) from two short looks at the machine taken
        while this process does nothing; the lighter look counts, so a brief burst does not cost threads."""
        readings = []
        for _ in range(2):
            a = self._sample()
            time.sleep(sample_s / 2)
            b = self._sample()
            if a is not None and b is not None:
                readings.append(self._load(a, b))
        self._mark = self._sample()
        if not readings:
            return self.most, None
        return self.wanted(min(readings)), min(readings)

    def start(self, sample_s: float = 0.4) -> int:
        """Set torch's thread count from a short look at the machine (nothing of ours running); returns it."""
        import torch

        threads, others = self.look(sample_s)
        torch.set_num_threads(threads)
        if threads < self.most:
            self._record("start", threads, others)
        return threads

    def after_step(self) -> int | None:
        """Called after each training step and scoring batch; returns the new thread count when it changed."""
        import torch

        self.calls += 1
        others = self.others()
        if others is None:
            return None
        current, want = torch.get_num_threads(), self.wanted(others)
        if want == current:
            self._pending = []
            return None
        lower = want < current
        if self._pending and (self._pending[-1] < current) != lower:
            self._pending = []  # the direction turned: start counting again
        self._pending.append(want)
        # A drop needs `down_after` readings in a row, or one over a long window (a slow step: the stall is
        # already costing seconds, and a second of readings is no longer noise).
        if len(self._pending) < (self.down_after if lower else self.up_after) and not (
                lower and self._window >= self.LONG_WINDOW_S):
            return None
        target = max(self._pending) if lower else min(self._pending)  # the mildest change the readings agree on
        self._pending = []
        torch.set_num_threads(target)
        self._record(self.where(), target, others)
        return target

    def where(self) -> str:
        """Where the run is, for the record: a stage may replace it (training says its step)."""
        return f"call {self.calls}"

    def _record(self, at: str, threads: int, others: float):
        why = f"other programs used {others:.1f} of this process's {len(self.cpus)} cores"
        self.changes.append({"at": at, "threads": threads, "why": why})
        print(f"threads: {threads} ({at}; {why})", flush=True)


def free_threads(most: int | None = None, sample_s: float = 0.4) -> int:
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
def governed(device: str = "cpu", threads: int = 0):
    """Within the block, torch's threads follow the cores other programs leave free (CPU and `threads` 0; loops call
    `paced`), or stay at `threads` when you set it; afterwards the count before the block is restored, also after an
    error or an interrupt. Yields the governor, or None when none runs (GPU, `threads` set, one already active)."""
    global _ACTIVE
    import torch

    before = torch.get_num_threads()
    baseline = baseline_threads()
    mine = device == "cpu" and not threads and _ACTIVE is None
    try:
        if threads:
            torch.set_num_threads(threads)
        if mine:
            _ACTIVE = ThreadGovernor(baseline)
            torch.set_num_threads(baseline)
            _ACTIVE.start()
        yield _ACTIVE if mine else None
    finally:
        if mine:
            _ACTIVE = None
        torch.set_num_threads(before)


def paced(items):
    """`items`, with the active governor (if any) reading the machine between them."""
    for n, item in enumerate(items):
        if n and _ACTIVE is not None:
            _ACTIVE.after_step()
        yield item


def thread_changes() -> list[dict]:
    """What the active governor changed so far (the list it keeps adding to), or [] without one."""
    return _ACTIVE.changes if _ACTIVE is not None else []
