"""The HTTP engine of the scorer interface: a model behind an OpenAI-compatible `/v1/completions` API.

Such as llama.cpp's server serving the exported GGUF (`kit.scoring.serve.serve_gguf` starts one), kit's tenant server
(`kit.scoring.serve.serve_tenants`), or a server the team runs. Only what every such server offers is used: a completion
with `max_tokens=1` and `logprobs=k` returns the k most likely next tokens with their log-probabilities.

Labels follow `kit.scoring.base.label_tokens`, with the label tokens taken from the Hugging Face tokenizer of the
same base model. First-token labels cost one request per prompt. Whole labels are read token by token: one request
per distinct label opening (the prompt followed by the label's first tokens), the tokens all labels share skipped
(they add the same to every label). A label token missing from the returned top-k gets the smallest returned value
(an upper bound on its log-probability); how often that happened is kept in `outside_top_k`, so a reader can tell
when k was too small. llama-cpp-python's server needs `logits_all` (its default) for logprobs.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from os.path import commonprefix

import numpy as np

from kit import progress
from kit.errors import KitError
from kit.scoring.base import label_tokens, softmax_rows


class EndpointError(KitError):
    """The endpoint cannot be reached, started, or does not answer as an OpenAI-compatible completions API."""


class EndpointScorer:
    """Label probabilities and generations from an OpenAI-compatible `/v1/completions` endpoint.

    `label_pieces` maps each label to the text of the tokens it is scored by (`for_tokenizer` builds it by the label
    rule); `model` names the model (or tenant) in every request.
    """

    name = "endpoint"

    def __init__(self, base_url: str, label_pieces: dict[str, Sequence[str]], top_logprobs: int = 20,
                 timeout_s: float = 60, model: str = ""):
        self.base_url = base_url.rstrip("/")
        self.label_pieces = {lab: tuple(p) for lab, p in label_pieces.items()}
        if len(set(self.label_pieces.values())) != len(self.label_pieces):
            raise EndpointError("two labels are scored by the same tokens over the endpoint; give the labels "
                                "different names.")
        self.top_logprobs = top_logprobs
        self.timeout_s = timeout_s
        self.model = model
        self.outside_top_k = 0  # label tokens missing from the returned top-k, over all prompts scored

    @classmethod
    def for_tokenizer(cls, base_url: str, tokenizer, labels, **kw) -> EndpointScorer:
        """Label tokens as text, by the label rule, from the Hugging Face tokenizer of the same base model."""
        plan = label_tokens(lambda t: tokenizer(t, add_special_tokens=False)["input_ids"], list(labels))
        pieces = {lab: tuple(tokenizer.decode(list(ids[:k + 1]))[len(tokenizer.decode(list(ids[:k]))):]
                             for k in range(len(ids)))
                  for lab, ids in zip(labels, plan.ids)}
        return cls(base_url, pieces, **kw)

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

    def _next_tokens(self, text: str) -> dict[str, float]:
        """The server's top-k next tokens after `text`, with their log-probabilities."""
        resp = self._post("/completions", {"prompt": text, "max_tokens": 1, "temperature": 0.0,
                                           "logprobs": self.top_logprobs})
        lp = resp["choices"][0].get("logprobs") or {}
        top = (lp.get("top_logprobs") or [None])[0]
        if not top:
            raise EndpointError(f"{self.base_url} returned no top_logprobs; a llama.cpp server must run with "
                                "logits_all enabled (the default of `python -m llama_cpp.server`).")
        return top

    def score(self, prompts: list[str], labels: Sequence[str]) -> np.ndarray:
        """Probabilities over `labels` per prompt (rows sum to 1), from the served top-k log-probabilities."""
        unknown = [lab for lab in labels if lab not in self.label_pieces]
        if unknown:
            raise EndpointError(f"labels {unknown} were not given to this scorer; build it with these labels "
                                "(EndpointScorer.for_tokenizer(url, tokenizer, labels)).")
        pieces = [self.label_pieces[lab] for lab in labels]
        shared = len(commonprefix(pieces))  # tokens every label opens with: the same log-probability for all
        out = np.zeros((len(prompts), len(labels)))
        for i, prompt in enumerate(progress.bar(prompts, desc="scoring endpoint", unit="prompts")):
            asked: dict[tuple, dict] = {}
            for j, label in enumerate(pieces):
                for k in range(shared, len(label)):
                    opening = label[:k]
                    if opening not in asked:
                        asked[opening] = self._next_tokens(prompt + "".join(opening))
                    top = asked[opening]
                    value = top.get(label[k])
                    if value is None:
                        self.outside_top_k += 1
                        value = min(top.values())
                    out[i, j] += value
        return softmax_rows(out)

    def generate(self, prompts: list[str], stop: list[str], max_new_tokens: int = 12) -> list[str]:
        texts = []
        for prompt in progress.bar(prompts, desc="generating endpoint", unit="prompts"):
            resp = self._post("/completions", {"prompt": prompt, "max_tokens": max_new_tokens, "temperature": 0.0,
                                               "stop": stop})
            texts.append(resp["choices"][0]["text"].strip())
        return texts
