"""Endpoint: evaluate a model the way it is served, through an OpenAI-compatible completions API.

In: the base URL of a server (`http://127.0.0.1:8000/v1`), such as llama.cpp's server from llama-cpp-python serving
the exported GGUF, or a GGUF path that `serve_gguf` starts such a server for on 127.0.0.1. Out: an `EndpointScorer`
with the same two methods as the transformers scorer in `kit.evaluate` (`score` and `generate`), so one code path
evaluates both and their numbers can be compared.

Label scoring over HTTP uses the completions endpoint with `max_tokens=1` and `logprobs=k`: the server returns the
k most likely first answer tokens with their log-probabilities. That is the same first-token rule the transformers
scorer applies. A label whose first token is not among the k gets the smallest returned value (an upper bound on its
true log-probability); how often that happened is kept in `outside_top_k`, so a reader can tell when k was too small.
llama-cpp-python's server needs `logits_all` (its default) for logprobs.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from kit import KitError, progress


class EndpointError(KitError):
    """The endpoint cannot be reached, started, or does not answer as an OpenAI-compatible completions API."""


class EndpointScorer:
    """Label probabilities and generations from an OpenAI-compatible `/v1/completions` endpoint."""

    name = "endpoint"

    def __init__(self, base_url: str, first_token_text: dict[str, str], top_logprobs: int = 20, timeout_s: float = 60,
                 model: str = ""):
        self.base_url = base_url.rstrip("/")
        self.first_token_text = dict(first_token_text)
        if len(set(self.first_token_text.values())) != len(self.first_token_text):
            raise EndpointError("two labels start with the same token, so first-token scoring cannot tell them "
                                "apart over the endpoint; rename a label so the labels start differently.")
        self.top_logprobs = top_logprobs
        self.timeout_s = timeout_s
        self.model = model
        self.outside_top_k = 0  # label first tokens missing from the returned top-k, over all prompts scored

    @classmethod
    def for_tokenizer(cls, base_url: str, tokenizer, labels, **kw) -> "EndpointScorer":
        """First tokens of each label as text, taken from the Hugging Face tokenizer of the same base model."""
        firsts = {lab: tokenizer.decode([tokenizer(lab, add_special_tokens=False)["input_ids"][0]]) for lab in labels}
        return cls(base_url, firsts, **kw)

    def _post(self, route: str, body: dict) -> dict:
        if self.model:
            body = {"model": self.model, **body}
        req = urllib.request.Request(f"{self.base_url}{route}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")[:300]
            raise EndpointError(f"{self.base_url}{route} answered HTTP {e.code}: {detail}. Check that the server "
                                "offers the legacy completions API with logprobs (llama.cpp's server does).") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
            raise EndpointError(f"cannot reach {self.base_url}{route} ({e}); is the server running? Set endpoint_url "
                                "to its /v1 address, or endpoint_gguf_type to a GGUF file to serve locally.") from None

    def score(self, prompts: list[str], labels) -> np.ndarray:
        """Probabilities over `labels` per prompt (rows sum to 1), from the top-k first-token log-probabilities."""
        labels = list(labels)
        out = np.zeros((len(prompts), len(labels)))
        for i, prompt in enumerate(progress.bar(prompts, desc="scoring endpoint", unit="prompts")):
            resp = self._post("/completions", {"prompt": prompt, "max_tokens": 1, "temperature": 0.0,
                                               "logprobs": self.top_logprobs})
            lp = resp["choices"][0].get("logprobs") or {}
            top = (lp.get("top_logprobs") or [None])[0]
            if not top:
                raise EndpointError(f"{self.base_url} returned no top_logprobs; a llama.cpp server must run with "
                                    "logits_all enabled (the default of `python -m llama_cpp.server`).")
            floor = min(top.values())
            row = []
            for lab in labels:
                value = top.get(self.first_token_text[lab])
                if value is None:
                    self.outside_top_k += 1
                    value = floor
                row.append(value)
            row = np.array(row, dtype=float)
            p = np.exp(row - row.max())
            out[i] = p / p.sum()
        return out

    def generate(self, prompts: list[str], stop: list[str], max_new_tokens: int = 12) -> list[str]:
        texts = []
        for prompt in progress.bar(prompts, desc="generating endpoint", unit="prompts"):
            resp = self._post("/completions", {"prompt": prompt, "max_tokens": max_new_tokens, "temperature": 0.0,
                                               "stop": stop})
            texts.append(resp["choices"][0]["text"].strip())
        return texts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve_gguf(gguf_path: str | Path, n_ctx: int = 1024, startup_timeout_s: float = 120, threads: int = 0):
    """Start llama.cpp's OpenAI-compatible server (llama-cpp-python) on 127.0.0.1 for a GGUF; yield its /v1 URL.

    The server is our child process and is stopped when the block ends, also on errors.
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
    # kit.llamacpp runs llama-cpp-python's server with the buffer settings that are safe on this CPU.
    cmd = [sys.executable, "-m", "kit.llamacpp", "--model", str(gguf_path), "--host", "127.0.0.1",
           "--port", str(port), "--n_ctx", str(n_ctx), "--logits_all", "true"]
    if threads:
        cmd += ["--n_threads", str(threads)]
    with _serve(cmd, port, gguf_path, startup_timeout_s) as url:
        yield url


@contextmanager
def serve_tenants(base_gguf: str | Path, adapters: dict[str, str | Path | None], n_ctx: int = 1024,
                  startup_timeout_s: float = 120):
    """One base GGUF with a GGUF LoRA adapter per tenant (None: the base alone) behind one /v1/completions on
    127.0.0.1 (`kit.tenants`); each request's `model` names the tenant. Yields the /v1 URL."""
    base_gguf = Path(base_gguf)
    missing = [str(p) for p in [base_gguf, *(a for a in adapters.values() if a)] if not Path(p).exists()]
    if missing:
        raise EndpointError(f"no file {', '.join(missing)}; 05_export writes base-<type>.gguf and "
                            "adapter-<name>-f16.gguf with adapter_variant=True.")
    port = free_port()
    cmd = [sys.executable, "-m", "kit.tenants", "--base", str(base_gguf), "--port", str(port), "--n_ctx", str(n_ctx)]
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
    from kit import llamacpp

    tail = llamacpp.log_tail(log_path, 8)
    _, reason = llamacpp.extra_buffers()
    return (f"the llama.cpp server for {gguf_path.name} {llamacpp.how_it_ended(code)} while answering ({reason}). Set "
            f"{llamacpp.ENV_EXTRA_BUFFERS}=0 to keep llama.cpp's repacked/AMX buffers off (known crash: "
            f"{llamacpp.CRASH_ISSUE}), or serve the model yourself and set endpoint_url."
            + (f"\nLast lines of its log:\n{tail}" if tail else ""))
