"""Serving many tenants from one base: one base GGUF in memory, one GGUF LoRA adapter per tenant, chosen per request.

`python -m kit.scoring.tenants --base base-q8_0.gguf --adapter acme=adapter-acme-f16.gguf --adapter plain= --port 8080`
serves an OpenAI-compatible `/v1/completions` (and `/v1/models`) on 127.0.0.1; each request's `model` names the
tenant, whose adapter is switched in before the prompt is read (`plain=` with no file serves the base alone).
`kit.scoring.EndpointScorer(url, …, model="acme")` evaluates one tenant's adapter through it, as stage 04 does.

Why a small server of our own: llama-cpp-python's server takes one LoRA per model and, given several models, loads
each one whole (the base again) when a request names it; llama.cpp's own server selects LoRA adapters per request
but is not part of llama-cpp-python's build. This one keeps a single base and swaps only the adapters
(`llama_set_adapters_lora`), a few MB each. Requests are answered one at a time (one llama.cpp context); the
key/value cache is dropped when the tenant changes, since it was computed with the other tenant's weights. On GPUs,
vLLM's `--enable-lora` does the same at scale.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from kit.models import llamacpp


class TenantModel:
    """The base model with every tenant's adapter loaded once; `complete` answers as the named tenant."""

    def __init__(self, base_gguf: str | Path, adapters: dict[str, str | None], n_ctx: int = 1024):
        import llama_cpp

        self.llm = llamacpp.load(base_gguf, n_ctx=n_ctx, n_batch=n_ctx, logits_all=False)
        self.adapters = {}
        for tenant, path in adapters.items():
            if not path:
                self.adapters[tenant] = None
                continue
            handle = llama_cpp.llama_adapter_lora_init(self.llm.model, str(path).encode())
            if not handle:
                raise llamacpp.LlamaCppError(f"llama.cpp could not load the LoRA adapter {path} for tenant "
                                             f"'{tenant}'; is it a GGUF adapter of this base ({base_gguf})?")
            self.adapters[tenant] = handle
        self.current: str | None = None
        self.lock = threading.Lock()

    def _select(self, tenant: str) -> None:
        import ctypes

        import llama_cpp

        if tenant == self.current:
            return
        handle = self.adapters[tenant]
        if handle is None:
            llama_cpp.llama_set_adapters_lora(self.llm.ctx, None, 0, None)
        else:
            arr = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(handle)
            scales = (ctypes.c_float * 1)(1.0)
            llama_cpp.llama_set_adapters_lora(self.llm.ctx, arr, 1, scales)
        self.llm.reset()  # cached keys/values belong to the previous tenant's weights
        self.current = tenant

    def complete(self, body: dict) -> dict:
        tenant = body.get("model", "")
        if tenant not in self.adapters:
            raise KeyError(f"unknown tenant {tenant!r}; this server has {', '.join(sorted(self.adapters))}")
        prompt, k = body.get("prompt", ""), body.get("logprobs")
        with self.lock:
            self._select(tenant)
            if k:
                out = self._next_token_logprobs(prompt, int(k))
            else:
                out = self.llm(prompt, max_tokens=int(body.get("max_tokens", 16)),
                               temperature=float(body.get("temperature", 0.0)), top_k=1, stop=body.get("stop") or [])
        out["model"] = tenant
        return out

    def _next_token_logprobs(self, prompt: str, k: int) -> dict:
        """The k most likely next tokens with their log-probabilities, as the completions API returns them for
        `max_tokens=1, logprobs=k`. Computed from the last position's logits, so the context keeps no logits for
        every position (llama-cpp-python's own logprobs need `logits_all`, ~1 GB for this vocabulary)."""
        import numpy as np

        from kit.scoring.llamacpp import eval_prompt

        logits = eval_prompt(self.llm, self.llm.tokenize(prompt.encode(), add_bos=True, special=True))
        logp = logits - logits.max() - np.log(np.exp(logits - logits.max()).sum())
        top = np.argsort(-logp)[:k]
        text = lambda t: self.llm.detokenize([int(t)]).decode("utf-8", errors="ignore")  # noqa: E731
        return {"object": "text_completion", "choices": [{
            "index": 0, "text": text(top[0]), "finish_reason": "length",
            "logprobs": {"tokens": [text(top[0])], "token_logprobs": [float(logp[top[0]])],
                         "top_logprobs": [{text(t): float(logp[t]) for t in top}], "text_offset": [0]}}]}


def make_handler(model: TenantModel):
    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, obj: dict) -> None:
            data = json.dumps(obj, default=float).encode()  # llama-cpp-python's logprobs are numpy floats
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802 (http.server's naming)
            if self.path.rstrip("/") == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": t, "object": "model"} for t in model.adapters]})
            else:
                self._send(404, {"error": {"message": f"no route {self.path}; use /v1/completions"}})

        def do_POST(self):  # noqa: N802
            if self.path.rstrip("/") != "/v1/completions":
                self._send(404, {"error": {"message": f"no route {self.path}; use /v1/completions"}})
                return
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                self._send(200, model.complete(body))
            except KeyError as e:
                self._send(404, {"error": {"message": str(e.args[0])}})
            except (ValueError, TypeError) as e:
                self._send(400, {"error": {"message": f"bad request: {e}"}})

        def log_message(self, *args):  # keep request lines out of the notebook
            pass

    return Handler


def parse_adapters(items: list[str]) -> dict[str, str | None]:
    out = {}
    for item in items:
        tenant, sep, path = item.partition("=")
        if not sep or not tenant:
            raise SystemExit(f"--adapter '{item}' is not TENANT=PATH (PATH may be empty for the base alone)")
        if path and not Path(path).exists():
            raise SystemExit(f"--adapter {tenant}: no file {path}")
        out[tenant] = path or None
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m kit.scoring.tenants", description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, help="the base model's GGUF (05 writes base-<type>.gguf)")
    p.add_argument("--adapter", action="append", default=[], metavar="TENANT=PATH",
                   help="a tenant and its GGUF LoRA adapter (05 writes adapter-<name>-f16.gguf); repeat per tenant")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--n_ctx", type=int, default=1024)
    args = p.parse_args(argv)
    model = TenantModel(args.base, parse_adapters(args.adapter), n_ctx=args.n_ctx)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(model))
    print(f"serving {len(model.adapters)} tenant(s) on http://{args.host}:{args.port}/v1", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
