"""Progress you can see: tqdm's bar in a notebook or terminal, one line per step in headless runs.

`bar()` is the one way kit shows progress. Where it draws is set by the environment variable `KIT_PROGRESS`:
- unset (a notebook in JupyterLab, `python -m kit train` in a terminal): `tqdm.auto`, i.e. the notebook widget or
  the terminal bar;
- `lines` (set by `kit.runs.execute` for papermill runs, where no one watches the notebook): a plain line on stderr
  now and then, with what is done, elapsed and remaining time. `kit.runs` forwards these lines (they start with
  `LINE_PREFIX`) to the terminal of `python -m kit run` / `make demo`;
- `off`: nothing.

The line mode is a small class of its own rather than tqdm writing to a file: tqdm redraws one line with carriage
returns, which a log or a notebook's stderr stream keeps as one ever-growing line. Elapsed and remaining times are
formatted by tqdm.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from tqdm.auto import tqdm as _auto_tqdm
from tqdm.std import tqdm as _std_tqdm

ENV = "KIT_PROGRESS"
LINE_PREFIX = "» "
LINE_EVERY_S = 10.0  # at most one line per bar in this many seconds (the first and the last are always written)


def mode() -> str:
    value = os.environ.get(ENV, "").strip().lower()
    return value if value in ("lines", "off") else "auto"


class Lines:
    """The part of tqdm's interface kit uses, written as lines: `» scoring tuned 64/114 (56%) · 0:12 elapsed, ~0:09 left`."""

    def __init__(self, iterable=None, total=None, desc: str = "", unit: str = "it", every_s: float = LINE_EVERY_S,
                 file=None, **_ignored):
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.desc, self.unit, self.every_s = total, desc, unit, every_s
        self.file = file or sys.stderr
        self.n = 0
        self.postfix = ""
        self.start = time.time()
        self._last_line = None
        self._lock = threading.Lock()
        self._closed = False
        self._write(started=True)

    def line(self, done: bool = False) -> str:
        elapsed = time.time() - self.start
        count = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        pct = f" ({self.n / self.total:.0%})" if self.total else ""
        parts = [f"{LINE_PREFIX}{self.desc} {count} {self.unit}{pct}".replace("  ", " ")]
        if self.postfix:
            parts.append(self.postfix)
        if done:
            finished = not self.total or self.n >= self.total
            parts.append(f"{'done in' if finished else 'stopped after'} {_std_tqdm.format_interval(elapsed)}")
        elif self.n and self.total:
            left = elapsed / self.n * (self.total - self.n)
            parts.append(f"{_std_tqdm.format_interval(elapsed)} elapsed, ~{_std_tqdm.format_interval(left)} left")
        else:
            parts.append(f"{_std_tqdm.format_interval(elapsed)} elapsed")
        return " · ".join(parts)

    def _write(self, started: bool = False, done: bool = False, force: bool = False) -> None:
        now = time.time()
        due = started or done or force or self._last_line is None or now - self._last_line >= self.every_s
        if not due:
            return
        self._last_line = now
        self.file.write(self.line(done) + "\n")
        self.file.flush()

    def update(self, n: int = 1) -> None:
        with self._lock:
            self.n += n
            if self.total and self.n >= self.total:
                return  # the last line comes from close(), with the total time
            self._write()

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = s

    def set_description(self, desc: str = "", refresh: bool = True) -> None:
        self.desc = desc

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._write(done=True)

    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self.update()
        finally:
            self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def bar(iterable=None, *, total: int | None = None, desc: str = "", unit: str = "it", leave: bool = True,
        disable: bool = False, every_s: float = LINE_EVERY_S):
    """A progress bar over `iterable` (or updated by hand up to `total`), drawn as `KIT_PROGRESS` says."""
    how = "off" if disable else mode()
    if how == "lines":
        return Lines(iterable, total=total, desc=desc, unit=unit, every_s=every_s)
    return _auto_tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, disable=how == "off")


def steps(total: int, desc: str):
    """A bar for a few unequal steps (export: merge, convert, quantize, parity): a line at every step."""
    return bar(total=total, desc=desc, unit="steps", every_s=0.0)


def step_in(steps_bar):
    """`with step("convert q8_0"): ...` names the running step on `steps_bar` and counts it when it is done."""
    import contextlib

    @contextlib.contextmanager
    def step(name: str):
        steps_bar.set_postfix_str(name)
        yield
        steps_bar.set_postfix_str(f"{name} done")
        steps_bar.update()

    return step


class LineEcho:
    """A file-like sink for a notebook's stderr (papermill's `stderr_file`) that passes on only kit's progress lines."""

    def __init__(self, log=print):
        self.log = log
        self._buffer = ""

    def write(self, text: str) -> int:
        self._buffer += text
        *complete, self._buffer = self._buffer.split("\n")
        for ln in complete:
            ln = ln.strip("\r")
            if ln.startswith(LINE_PREFIX):
                self.log(f"  {ln}")
        return len(text)

    def flush(self) -> None:
        pass


def trainer_callback():
    """A transformers `TrainerCallback` that writes training progress as lines (the notebook has Trainer's own bar)."""
    from transformers import TrainerCallback

    class TrainingLines(TrainerCallback):
        def __init__(self):
            self.bar = None
            self.loss = None

        def on_train_begin(self, args, state, control, **kw):
            self.bar = bar(total=state.max_steps, desc="training", unit="steps")

        def on_step_end(self, args, state, control, **kw):
            if self.bar is None:
                return
            self.bar.total = state.max_steps  # the time budget may shorten the run
            if self.loss is not None:
                self.bar.set_postfix_str(f"loss {self.loss:.4f}")
            self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                self.loss = float(logs["loss"])

        def on_train_end(self, args, state, control, **kw):
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    return TrainingLines()
