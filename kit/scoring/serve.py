"""Serving a GGUF over HTTP for evaluation: llama.cpp's OpenAI-compatible server for one GGUF (`serve_gguf`), or kit's
tenant server for one base with a LoRA per tenant (`serve_tenants`), each on 127.0.0.1 as our child process.

In: a GGUF path. Out: the server's /v1 URL, for `kit.scoring.EndpointScorer` (the HTTP engine of the scorer
interface), so stage 04 evaluates the model the way it is served. A server that dies (the AMX crash of llama.cpp, a
bad file) is reported with its signal and the tail of its log, not as "cannot reach".
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from kit import hardware
from kit.scoring.endpoint import EndpointError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve_gguf(gguf_path: str | Path, n_ctx: int = 1024, startup_timeout_s: float = 120, threads: int = 0):
    """Start llama.cpp's OpenAI-compatible server (llama-cpp-python) on 127.0.0.1 for a GGUF; yield its /v1 URL.

    The server is our child process and is stopped when the block ends, also on errors. `threads=0` gives it the
    cores other programs leave free at start (`kit.hardware.free_threads`), as kit's in-process llama.cpp gets.
    """
    gguf_path = Path(gguf_path)
    if not gguf_path.exists():
        raise EndpointError(f"no GGUF at {gguf_path}; run 05_export with this gguf type first, or serve "
                            "the model yourself and set endpoint_url.")
    try:
        import llama_cpp.server.app  # noqa: F401  (the server's extras: fastapi, uvicorn, …)
    except ImportError as e:
        raise EndpointError(f"llama.cpp's server is not installed ({e.name} missing); "
                            "install it with `pip install 'llama-cpp-python[server]'`.") from None
    port = free_port()
    # kit.models.llamacpp runs llama-cpp-python's server with the buffer settings that are safe on this CPU.
    cmd = [sys.executable, "-m", "kit.models.llamacpp", "--model", str(gguf_path), "--host", "127.0.0.1",
           "--port", str(port), "--n_ctx", str(n_ctx), "--logits_all", "true"]
    threads = threads or hardware.free_threads()
    cmd += ["--n_threads", str(threads), "--n_threads_batch", str(threads)]  # batch: prompt processing, i.e. scoring
    with _serve(cmd, port, gguf_path, startup_timeout_s) as url:
        yield url


@contextmanager
def serve_tenants(base_gguf: str | Path, adapters: dict[str, str | Path | None], n_ctx: int = 1024,
                  startup_timeout_s: float = 120):
    """One base GGUF with a GGUF LoRA adapter per tenant (None: the base alone) behind one /v1/completions on
    127.0.0.1 (`kit.scoring.tenants`); each request's `model` names the tenant. Yields the /v1 URL."""
    base_gguf = Path(base_gguf)
    missing = [str(p) for p in [base_gguf, *(a for a in adapters.values() if a)] if not Path(p).exists()]
    if missing:
        raise EndpointError(f"no file {', '.join(missing)}; 05_export writes base-<type>.gguf and "
                            "adapter-<name>-f16.gguf with adapter_variant=True.")
    port = free_port()
    cmd = [sys.executable, "-m", "kit.scoring.tenants", "--base", str(base_gguf), "--port", str(port), "--n_ctx", str(n_ctx)]
    for tenant, path in adapters.items():
        cmd += ["--adapter", f"{tenant}={path or ''}"]
    with _serve(cmd, port, base_gguf, startup_timeout_s) as url:
        yield url


@contextmanager
def _serve(cmd: list[str], port: int, gguf_path: Path, startup_timeout_s: float):
    """Start a server command (our child process), wait until /v1/models answers, yield its /v1 URL, stop it after."""
    log_path = gguf_path.with_name(f".{gguf_path.stem}.server-{port}.log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + startup_timeout_s
        while True:
            if proc.poll() is not None:
                tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-8:])
                raise EndpointError(f"llama.cpp server for {gguf_path.name} exited with code {proc.returncode}:\n{tail}")
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.time() > deadline:
                raise EndpointError(f"llama.cpp server for {gguf_path.name} did not answer within "
                                    f"{startup_timeout_s:.0f} s; see {log_path}.")
            time.sleep(0.3)
        try:
            yield url
        except EndpointError:
            if proc.poll() is None:
                raise
            raise EndpointError(_server_died(proc.returncode, gguf_path, log_path)) from None
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log_path.unlink(missing_ok=True)


def _server_died(code: int, gguf_path: Path, log_path: Path) -> str:
    from kit.models import llamacpp

    tail = llamacpp.log_tail(log_path, 8)
    _, reason = llamacpp.extra_buffers()
    return (f"the llama.cpp server for {gguf_path.name} {llamacpp.how_it_ended(code)} while answering ({reason}). Set "
            f"{llamacpp.ENV_EXTRA_BUFFERS}=0 to keep llama.cpp's repacked/AMX buffers off (known crash: "
            f"{llamacpp.CRASH_ISSUE}), or serve the model yourself and set endpoint_url."
            + (f"\nLast lines of its log:\n{tail}" if tail else ""))
