"""Endpoint evaluation against a real llama.cpp server started here on 127.0.0.1, serving a GGUF of a tiny model."""

import csv

import numpy as np
import pytest
from conftest import REPO

from kit.models.chat import GEMMA
from kit.scoring import EndpointError, EndpointScorer, serve
from kit.stages import evaluate, export
from kit.tasks.base import Task

LABELS = ("claim_status", "document_request", "billing_dispute", "agent_escalation")
TASK = Task(LABELS, "Route this insurance support email to one lane. Answer with the lane name only.")


def _tickets(n):
    with open(REPO / "data_samples" / "tickets.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[:n]
    return [{"id": r["ticket_id"], "text": f"{r['subject']}\n\n{r['body']}"[:300], "label": r["label"]} for r in rows]


@pytest.fixture(scope="module")
def tiny_router(tmp_path_factory, tokenizer):
    """A tiny random Gemma 3 taught briefly to put its first answer token on the lanes, saved and converted to GGUF.

    Unlike conftest's tiny model, query_pre_attn_scalar equals head_dim (as in the real 270M): llama.cpp scales
    attention by head_dim, so with the config default of 256 the two engines disagree by up to 0.1 in probability.
    """
    import torch
    from transformers import AutoModelForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    cfg = Gemma3TextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2, num_key_value_heads=1, head_dim=16, query_pre_attn_scalar=16,
                           max_position_embeddings=512, sliding_window=64, pad_token_id=tokenizer.pad_token_id,
                           bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                           layer_types=["sliding_attention", "full_attention"])
    model = AutoModelForCausalLM.from_config(cfg)
    rows = _tickets(24)
    prompts = [TASK.prompt(GEMMA, r["text"][:160]) for r in rows]
    firsts = evaluate.label_first_tokens(tokenizer, LABELS)
    target = torch.tensor([firsts[LABELS.index(r["label"])] for r in rows])
    tokenizer.padding_side = "left"
    enc = tokenizer(prompts, return_tensors="pt", padding=True)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(25):
        logits = model(**enc, logits_to_keep=1).logits[:, -1]
        torch.nn.functional.cross_entropy(logits, target).backward()
        opt.step(); opt.zero_grad()
    model.eval()
    out = tmp_path_factory.mktemp("tiny-router")
    model.save_pretrained(out / "hf")
    tokenizer.save_pretrained(out / "hf")
    gguf = export.convert(out / "hf", out, "f16")
    return model, gguf, _tickets(36)[24:]


def test_endpoint_scores_labels_like_transformers_on_the_same_model(tiny_router, tokenizer):
    model, gguf, rows = tiny_router
    prompts = evaluate.prompts_for(TASK, GEMMA, tokenizer, rows, 184)
    local = evaluate.predict(evaluate.HFScorer(model, tokenizer, progress=False), TASK, rows, prompts)
    with serve.serve_gguf(gguf) as url:
        assert url.startswith("http://127.0.0.1:")
        scorer = EndpointScorer.for_tokenizer(url, tokenizer, LABELS, top_logprobs=20)
        served = evaluate.predict(scorer, TASK, rows, prompts)
        generated = evaluate.generate_predictions(scorer, TASK, GEMMA, rows[:3], prompts[:3], max_new_tokens=4)
    assert scorer.outside_top_k == 0
    diff = max(abs(a["probs"][lab] - b["probs"][lab]) for a, b in zip(local, served) for lab in LABELS)
    assert diff < 0.01, diff  # f16 weights in llama.cpp vs float32 in transformers
    assert [a["prediction"] for a in local] == [b["prediction"] for b in served]
    spread = np.ptp([[p["probs"][lab] for lab in LABELS] for p in local], axis=0).max()
    assert spread > 5 * diff  # the probabilities really vary with the ticket, so the match is not between constants
    assert [g["id"] for g in generated] == [r["id"] for r in rows[:3]]
    assert all(set(g) >= {"prediction", "valid", "correct"} for g in generated)


def _labels_sharing_a_first_token(model, tokenizer, prompts, n=2):
    """Labels that open with the same token as `claim_status`, continued by tokens the tiny model rates among its
    eight most likely after that opening for every prompt (a random model's other tokens could fall outside the
    server's top-k), each spelled so that it tokenizes back to exactly those two tokens."""
    import torch

    first = tokenizer("claim_status", add_special_tokens=False)["input_ids"][0]
    ids = tokenizer(prompts, add_special_tokens=True)["input_ids"]
    with torch.no_grad():
        likely = [set(torch.topk(model(torch.tensor([p + [first]])).logits[0, -1], 8).indices.tolist()) for p in ids]
    out = []
    for t in sorted(set.intersection(*likely)):
        text = tokenizer.decode([first, t])
        if tokenizer(text, add_special_tokens=False)["input_ids"] == [first, t] and text.strip() == text:
            out.append(text)
    return out[:n]


def test_labels_sharing_a_first_token_are_scored_whole_over_the_endpoint_as_in_transformers(tiny_router, tokenizer):
    """The label rule is decided once (`kit.scoring.base.label_tokens`): over HTTP, too, labels that open alike are
    scored whole, token by token from the served top-k, and agree with transformers' whole-label scores."""
    from kit.scoring import label_first_tokens, score_labels

    model, gguf, rows = tiny_router
    prompts = evaluate.prompts_for(TASK, GEMMA, tokenizer, rows[:6], 184)
    shared = _labels_sharing_a_first_token(model, tokenizer, prompts)
    assert len(shared) == 2, "the tiny model offers no two labels that open alike"
    # and two one-token labels: the first tokens of two lanes, which the tiny model was taught to rate highly
    labels = [*shared, *(tokenizer.decode(tokenizer(lane, add_special_tokens=False)["input_ids"][:1])
                         for lane in ("document_request", "billing_dispute"))]
    assert label_first_tokens(tokenizer, labels) is None  # so every engine scores whole labels
    local = score_labels(model, tokenizer, prompts, labels, batch_size=4, progress=False)
    with serve.serve_gguf(gguf) as url:
        scorer = EndpointScorer.for_tokenizer(url, tokenizer, labels, top_logprobs=20)
        served = scorer.score(prompts, labels)
    assert scorer.outside_top_k == 0
    assert np.abs(served - local).max() < 0.01, (served, local)  # f16 weights in llama.cpp vs float32
    # llama.cpp in process (05's parity, 06's monitoring) walks the labels' shared openings once, to the same scores
    from kit.scoring.llamacpp import LlamaCppScorer

    in_process = LlamaCppScorer(gguf, n_ctx=256).score(prompts, labels)
    assert np.abs(in_process - local).max() < 0.01, (in_process, local)
    # the alike labels differ only in their second token: scored by the first alone they would tie
    assert np.abs(served[:, 0] - served[:, 1]).min() > 0.05 and np.abs(local[:, 0] - local[:, 1]).min() > 0.05


def test_server_is_stopped_when_the_block_ends(tiny_router):
    import urllib.request

    with serve.serve_gguf(tiny_router[1]) as url:
        pass
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url}/models", timeout=2)


def test_unreachable_endpoint_and_missing_gguf_say_what_to_do(tmp_path):
    scorer = EndpointScorer(f"http://127.0.0.1:{serve.free_port()}/v1", {"a": ["a"], "b": ["b"]})
    with pytest.raises(EndpointError, match="cannot reach .* is the server running"):
        scorer.score(["hi"], ["a", "b"])
    with pytest.raises(EndpointError, match="no GGUF at .* run 05_export"):
        with serve.serve_gguf(tmp_path / "none.gguf"):
            pass
    with pytest.raises(EndpointError, match="scored by the same tokens"):
        EndpointScorer("http://x/v1", {"claim_a": ["claim"], "claim_b": ["claim"]})
    with pytest.raises(EndpointError, match="were not given to this scorer"):
        scorer.score(["hi"], ["a", "c"])


def _server_pid() -> int:
    """The llama.cpp server this process started (kit runs it as `python -m kit.models.llamacpp`)."""
    import os
    from pathlib import Path

    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
                cmd = (proc / "cmdline").read_bytes().split(b"\0")
            except (OSError, IndexError, ValueError):
                continue
            if ppid == os.getpid() and b"kit.models.llamacpp" in cmd:
                return int(proc.name)
    raise AssertionError("no llama.cpp server child found")


def test_a_server_that_crashes_mid_evaluation_is_named_with_its_signal(tiny_router, tokenizer, monkeypatch):
    """The server runs with the AMX-safe buffers when asked; if it dies with SIGSEGV, the error says so (not
    'cannot reach')."""
    import os
    import signal

    from kit.models import llamacpp

    monkeypatch.setenv(llamacpp.ENV_EXTRA_BUFFERS, "0")
    _, gguf, rows = tiny_router
    prompts = evaluate.prompts_for(TASK, GEMMA, tokenizer, rows, 184)
    with pytest.raises(EndpointError, match=r"server for model-f16.gguf crashed with SIGSEGV.*KIT_LLAMA"):
        with serve.serve_gguf(gguf) as url:
            scorer = EndpointScorer.for_tokenizer(url, tokenizer, LABELS)
            assert scorer.score(prompts[:2], LABELS).shape == (2, 4)  # serves correctly with plain CPU buffers
            os.kill(_server_pid(), signal.SIGSEGV)  # what the AMX crash does to it
            import time

            time.sleep(1)
            scorer.score(prompts[:1], LABELS)


def test_the_served_model_gets_the_cores_other_programs_leave_free(tmp_path, monkeypatch):
    from contextlib import contextmanager

    from kit import hardware

    started = []

    @contextmanager
    def fake_serve(cmd, port, gguf_path, startup_timeout_s):
        started.append(cmd)
        yield "http://127.0.0.1:1/v1"

    monkeypatch.setattr(serve, "_serve", fake_serve)
    monkeypatch.setattr(hardware, "free_threads", lambda: 1)  # another program holds the other core
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    for threads, expect in ((0, "1"), (3, "3")):  # 0: what is free; a number you set is used as given
        with serve.serve_gguf(gguf, threads=threads):
            pass
        cmd = started[-1]
        assert cmd[cmd.index("--n_threads") + 1] == cmd[cmd.index("--n_threads_batch") + 1] == expect
