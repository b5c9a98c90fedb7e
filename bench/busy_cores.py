"""Training speed when another program is busy on one of the cores: thread counts and OpenMP wait policies, side by side.

PyTorch runs its CPU ops on an OpenMP thread team that splits each op evenly and waits for its slowest member; by
default (GNU OpenMP) a waiting thread spins before it sleeps. When another program holds one of the cores, the
thread on that core is descheduled in the middle of ops and its partners wait: a kit training step on 2 cores went
from ~0.8 s to ~12 s that way (AMX machine, a second training process on one core). Two remedies, compared here:
- fewer threads: kit's choice (`threads: 0`, kit.hardware.ThreadGovernor), which follows the cores other programs
  leave free, step by step; the `kit` row runs the governor after every step, as training does;
- `OMP_WAIT_POLICY=PASSIVE` (waiting threads sleep at once), shown for what it costs on a quiet machine;
  `GOMP_SPINCOUNT=<n>` arguments add rows for shorter spins.

Each row is a fresh process (OpenMP reads its policy once, when PyTorch loads it) timing real kit training steps: the
embedded Gemma 3 270M in the dtype kit picks, LoRA in every layer through kit's fused paths, batch 8 of ~90 tokens
sharing a 40-token instruction, loss on the last 5 tokens (kit.stages.train.completion_loss). "busy" runs one
spinning process beside it. The median step after one warm-up is reported.

Run: .venv/bin/python bench/busy_cores.py [GOMP_SPINCOUNT=10000 ...]   (about 5 minutes on 2 quiet cores)
Last line: quiet_default=<s> busy_default=<s> busy_kit=<s> arrives_default=<s> arrives_kit=<s> quiet_passive=<s>
busy_passive=<s> (seconds per step)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def child(steps: int, govern: bool, arrive_at: int) -> None:
    """Time `steps` training steps after one warm-up (with kit's thread governor after each step if `govern`); print
    the median seconds per step as JSON. With `arrive_at` >= 0 a spinning program starts after that many timed steps,
    and the mean of the steps from then on is printed instead (what the arrival costs, the governor's reaction
    included)."""
    sys.path.insert(0, str(REPO))
    import torch
    from peft import LoraConfig, get_peft_model

    from kit import hardware, models
    from kit.models import fused
    from kit.stages import train

    resolved = models.resolve()
    model = models.load_model(resolved, dtype=hardware.compute_dtype("auto").dtype)
    model.train()
    targets = train.lora_targets(model, "family", family=resolved.chat_format.family)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=targets, task_type="CAUSAL_LM"))
    fused.install_lora(model)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    torch.manual_seed(0)
    prefix = torch.randint(100, 20000, (1, 40)).expand(8, 40)
    ids = torch.cat([prefix, torch.randint(100, 20000, (8, 50))], 1)
    labels = torch.full_like(ids, -100)
    labels[:, -5:] = ids[:, -5:]
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    governor = hardware.ThreadGovernor(torch.get_num_threads()) if govern else None
    if governor:
        governor.start()
    times, load = [], None
    for n in range(steps + 1):
        if arrive_at >= 0 and n == arrive_at + 1:
            load = spinner()
        start = time.perf_counter()
        loss, _ = train.completion_loss(model, batch)
        loss.backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - start)
        if governor:
            governor.after_step()
    if load:
        load.kill()
        load.wait()
        after = times[arrive_at + 1:]
        s_per_step = sum(after) / len(after)
    else:
        timed = sorted(times[1:])
        s_per_step = timed[len(timed) // 2]
    print(json.dumps({"s_per_step": s_per_step, "threads": torch.get_num_threads(),
                      "policy": os.environ.get("OMP_WAIT_POLICY", "(unset)")}))


def spinner() -> subprocess.Popen:
    """Another program holding one core: a pure-Python busy loop."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def run_row(policy: str | None, threads: int, busy: bool, steps: int, govern: bool = False,
            arrive_at: int = -1) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
    if policy and policy.startswith("GOMP_SPINCOUNT="):
        env["GOMP_SPINCOUNT"] = policy.split("=", 1)[1]
    elif policy:
        env["OMP_WAIT_POLICY"] = policy
    else:  # GNU OpenMP's own default: 300,000 spins when neither variable is set
        env["GOMP_SPINCOUNT"] = "300000"
    env["OMP_NUM_THREADS"] = str(threads)
    load = spinner() if busy else None
    try:
        out = subprocess.run([sys.executable, __file__, "--child", str(steps), str(int(govern)), str(arrive_at)], env=env, capture_output=True,
                             text=True, timeout=900)
    finally:
        if load:
            load.kill()
            load.wait()
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode or not lines:
        raise SystemExit(f"row policy={policy} threads={threads} busy={busy} failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1])


def main() -> None:
    if len(sys.argv) > 4 and sys.argv[1] == "--child":
        child(int(sys.argv[2]), sys.argv[3] == "1", int(sys.argv[4]))
        return
    cores = len(os.sched_getaffinity(0))
    extra = [a for a in sys.argv[1:] if a.startswith("GOMP_SPINCOUNT=")]  # more policies to compare, e.g. GOMP_SPINCOUNT=30000
    rows = [("quiet", None, str(cores)), ("busy", None, str(cores)), ("busy", None, str(max(1, cores - 1))),
            ("quiet", None, "kit"), ("busy", None, "kit"), ("arrives", None, str(cores)), ("arrives", None, "kit"),
            ("quiet", "PASSIVE", str(cores)), ("busy", "PASSIVE", str(cores))]
    rows += [(load, p, str(cores)) for p in extra for load in ("quiet", "busy")]
    results = {}
    print("busy: a spinning program runs beside from the start (median step); arrives: it starts after the 2nd timed "
          "step (mean of the 8 steps from then on, the governor's reaction included)")
    print(f"{'machine':7} {'OpenMP wait':22} {'threads':>22} {'s/step':>7}")
    for load, policy, threads in rows:
        govern = threads == "kit"
        arrives = load == "arrives"
        r = run_row(policy, cores if govern else int(threads), load == "busy", steps=10 if arrives else 6,
                    govern=govern, arrive_at=2 if arrives else -1)
        results[(load, policy, threads)] = r["s_per_step"]
        shown = f"kit: {r['threads']} at the end" if govern else threads
        print(f"{load:7} {policy or 'default (spin, sleep)':22} {shown:>22} {r['s_per_step']:7.2f}", flush=True)
    print(f"quiet_default={results[('quiet', None, str(cores))]:.2f} busy_default={results[('busy', None, str(cores))]:.2f} "
          f"busy_kit={results[('busy', None, 'kit')]:.2f} arrives_default={results[('arrives', None, str(cores))]:.2f} "
          f"arrives_kit={results[('arrives', None, 'kit')]:.2f} quiet_passive={results[('quiet', 'PASSIVE', str(cores))]:.2f} "
          f"busy_passive={results[('busy', 'PASSIVE', str(cores))]:.2f}")


if __name__ == "__main__":
    main()
