"""llama.cpp as kit runs it: weights in buffers that are safe on this CPU, and work in a child process.

Two facts shape this module.
- On CPUs with AMX (Intel Sapphire Rapids and later, the usual cloud server), llama.cpp repacks q8_0/q4_K_M weights
  into its AMX buffer type and can crash in the first inference (llama.cpp#20824; Ollama shows the same crash,
  ollama#17006, #17205). Loading with `use_extra_bufts = False` keeps the weights in plain CPU buffers and runs
  correctly. llama-cpp-python's `Llama()` has no argument for it, so `load` sets it on the parameters `Llama()`
  starts from.
- A native fault (SIGSEGV, SIGILL, an abort in ggml) cannot be caught in Python: in a notebook it kills the kernel
  with "Kernel died" and nothing else. So kit's llama.cpp work runs in a spawned child process (`isolated`); if the
  child dies, the parent raises a `LlamaCppError` naming the library, the file, the signal, the tail of llama.cpp's
  log and what to do, and the notebook carries on.
"""

from __future__ import annotations

import contextlib
import faulthandler
import multiprocessing
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

from kit.errors import KitError
from kit.hardware import has_amx

# Set to 0 to keep llama.cpp's extra buffer types (AMX, repacked weights) off on any CPU, to 1 to keep them on.
ENV_EXTRA_BUFFERS = "KIT_LLAMA_EXTRA_BUFFERS"
CRASH_ISSUE = "https://github.com/ggml-org/llama.cpp/issues/20824"


class LlamaCppError(KitError):
    """llama.cpp failed, or crashed in its native code, while kit used it."""


def extra_buffers(flags: frozenset[str] | None = None) -> tuple[bool, str]:
    """Whether llama.cpp may use its extra buffer types here, and why."""
    forced = os.environ.get(ENV_EXTRA_BUFFERS, "").strip()
    if forced in ("0", "1"):
        return forced == "1", f"set by {ENV_EXTRA_BUFFERS}={forced}"
    if has_amx(flags):
        return False, (f"this CPU has AMX, where llama.cpp's AMX weight repacking crashes in the first inference "
                       f"({CRASH_ISSUE}); weights stay in plain CPU buffers")
    return True, "no CPU feature with a known llama.cpp crash"


@contextlib.contextmanager
def _default_params(use_extra_bufts: bool, context: dict | None = None):
    """Within the block, `Llama()` starts from model parameters with `use_extra_bufts` set as given, and from context
    parameters with the fields of `context` set (those `Llama()` has no argument for, e.g. `n_seq_max`)."""
    import llama_cpp.llama_cpp as low

    original, original_context = low.llama_model_default_params, low.llama_context_default_params

    def patched():
        params = original()
        params.use_extra_bufts = use_extra_bufts
        return params

    def patched_context():
        params = original_context()
        for name, value in (context or {}).items():
            setattr(params, name, value)
        return params

    low.llama_model_default_params = patched
    low.llama_context_default_params = patched_context
    try:
        yield
    finally:
        low.llama_model_default_params = original
        low.llama_context_default_params = original_context


def load(model_path: str | Path, context: dict | None = None, **kwargs):
    """`llama_cpp.Llama` for a GGUF, with the buffer settings that are safe on this CPU (see `extra_buffers`);
    `context` sets context parameters `Llama()` has no argument for."""
    from llama_cpp import Llama

    allowed, _ = extra_buffers()
    kwargs.setdefault("verbose", False)
    with _default_params(allowed, context):
        try:
            return Llama(model_path=str(model_path), **kwargs)
        except ValueError as e:  # llama-cpp-python's way of saying the file did not load
            raise LlamaCppError(f"llama.cpp could not load {model_path}: {e}. Check that the file is a complete GGUF "
                                "(re-run the export stage to write it again).") from None


def _child(conn, log_path: str, fn, args, kwargs, with_report: bool = False):
    """Body of the child process: llama.cpp's log and any native traceback go to `log_path`, the result to `conn`.

    With `with_report`, `fn` gets a `report(n=1)` callable that tells the parent `n` more items are done.
    """
    log = open(log_path, "w", buffering=1)
    if with_report:
        kwargs = {**kwargs, "report": lambda n=1: conn.send(("progress", n))}
    os.dup2(log.fileno(), 2)  # llama.cpp writes to file descriptor 2; keep it out of the notebook and in the log
    faulthandler.enable(file=log)  # on a native fault, the Python stack of the call that crashed lands in the log
    try:
        result = ("ok", fn(*args, **kwargs))
    except BaseException as e:  # every failure goes back to the parent, which raises it there
        try:
            import pickle

            pickle.dumps(e)
            result = ("error", e)
        except Exception:
            result = ("error", LlamaCppError(f"{type(e).__name__}: {e}"))
        log.write(traceback.format_exc())
    conn.send(result)
    conn.close()


_PROGRESS_LOCK = threading.Lock()

_NOISE = ("multiprocessing/", 'File "<string>"', "Extension modules:", "kit/models/llamacpp.py")


def log_tail(path: Path, n: int = 10) -> str:
    """The end of the child's log without the frames every child has (process start-up, this module)."""
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines()
                 if ln.strip() and not any(k in ln for k in _NOISE)]
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def isolated(fn, *args, what: str, gguf: str | Path, timeout_s: float | None = None,
             error: type[KitError] = LlamaCppError, progress=None, **kwargs):
    """Run `fn(*args, **kwargs)` in a fresh child process and return its result.

    `fn` must be a module-level function (it is sent to the child by name). A Python exception in the child is raised
    again here; a child that dies (a native crash) or runs past `timeout_s` becomes an `error` (the caller's stage
    error, `LlamaCppError` by default) that names `what` was being done, on which GGUF file, and what to try.
    With `progress` (a `kit.progress.bar`), `fn` is called with `report=` and each report moves that bar.
    """
    ctx = multiprocessing.get_context("spawn")  # a clean interpreter: no torch threads or CUDA state inherited
    fd, log_name = tempfile.mkstemp(prefix="kit-llamacpp-", suffix=".log")
    os.close(fd)
    log_path = Path(log_name)
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, log_name, fn, args, kwargs, progress is not None), daemon=True)
    proc.start()
    child.close()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    try:
        while True:
            got = parent.poll(None if deadline is None else max(0.0, deadline - time.monotonic()))
            try:
                message = parent.recv() if got else None
            except EOFError:  # the child died before it could answer
                message = None
            if message is not None and message[0] == "progress":
                with _PROGRESS_LOCK:  # several children (threads of one parent) may move one bar
                    progress.update(message[1])
                continue
            break
        if message is None:
            if proc.is_alive():
                proc.kill()
            proc.join(10)
            raise error(_crash_message(proc.exitcode, what, gguf, log_path, timed_out=not got))
        proc.join(10)
        status, value = message
        if status == "error":
            raise value
        return value
    finally:
        parent.close()
        if proc.is_alive():
            proc.kill()
        log_path.unlink(missing_ok=True)


def how_it_ended(exitcode: int | None) -> str:
    """A child process's exit code in words: 'crashed with SIGSEGV' for a signal, else the code."""
    if exitcode is not None and exitcode < 0:
        return f"crashed with {signal.Signals(-exitcode).name}"
    return f"exited with code {exitcode} without an answer"


def _crash_message(exitcode, what: str, gguf, log_path: Path, timed_out: bool) -> str:
    import llama_cpp

    lib = f"llama.cpp (llama-cpp-python {llama_cpp.__version__})"
    how = "did not finish in time and was stopped" if timed_out else how_it_ended(exitcode)
    allowed, reason = extra_buffers()
    tail = log_tail(log_path)
    return (f"{lib} {how} while {what} {gguf}. The notebook kernel is unharmed: the work ran in a child process. "
            f"Buffer setting: extra buffer types {'on' if allowed else 'off'} ({reason}). What to try: set "
            f"{ENV_EXTRA_BUFFERS}=0 to keep llama.cpp's repacked/AMX buffers off (known crash: {CRASH_ISSUE}); "
            "check that the GGUF file is complete (`python -m kit verify <export dir>`); reinstall llama-cpp-python "
            "to rebuild it for this CPU (`pip install --force-reinstall --no-cache-dir llama-cpp-python`)."
            + (f"\nLast lines of llama.cpp's log:\n{tail}" if tail else ""))


def serve_main(argv: list[str]) -> None:
    """`python -m kit.models.llamacpp <llama_cpp.server arguments>`: llama-cpp-python's server with the safe buffers."""
    import runpy

    allowed, _ = extra_buffers()
    sys.argv = ["llama_cpp.server", *argv]
    with _default_params(allowed):
        runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    serve_main(sys.argv[1:])
