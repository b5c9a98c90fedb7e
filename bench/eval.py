"""Why kit scores labels instead of generating them: speed and agreement on the same holdout, side by side.

Scoring reads every lane's first-token probability from one forward pass per prompt, the instruction all prompts
share computed once (`kit.scoring.continuation_logprobs`). Generate-and-parse decodes the answer greedily token by
token with transformers' `generate` (as a served chat model would) and parses the lane from the text. Both run on the
real model with a trained adapter, the same prompts, the same batch size, batches grouped by length, in one process.
Two more rows say where the time goes: scoring with the shared prefix switched off, and `generate` stopped after one
token (its prompt pass alone; the rest of its time is decoding).

Run: .venv/bin/python bench/eval.py --run-dir papermill_runs/demo   (needs 02–03 done in that run; about 2 minutes for
the demo's 114 tickets on 2 cores). `--gguf q8_0` adds the same comparison through llama.cpp's server (after 05).
Prints what it measured; gates nothing.
Last line: scoring_ex_per_s=<x> generate_ex_per_s=<y> ratio=<x/y>
"""

import argparse
import time
from pathlib import Path

from kit import models
from kit.io import read_json, read_jsonl
from kit.stages import evaluate
from kit.tasks.base import Task, prompt_budget


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run-dir", default="papermill_runs/demo", help="a run with data/ and adapters/<name>/")
    ap.add_argument("--model", default=models.EMBEDDED_SPEC)
    ap.add_argument("--adapter-name", default="default")
    ap.add_argument("--max-examples", type=int, default=0, help="first N holdout rows (0: all)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=8, help="enough for the longest lane and the end-of-turn")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--gguf", default="", choices=["", "f16", "q8_0", "q4_k_m"],
                    help="also time both ways through llama.cpp's server on the run's export/model-<type>.gguf, "
                         "one request per ticket, as a served model is called (needs 05 done)")
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    run_dir = Path(args.run_dir)
    resolved = models.resolve(args.model)
    tok = models.load_tokenizer(resolved)
    fmt = resolved.chat_format
    task = Task.load(run_dir)
    rows = read_jsonl(run_dir / "data" / "holdout.jsonl")
    rows = rows[: args.max_examples] if args.max_examples else rows
    adapter_dir = run_dir / "adapters" / args.adapter_name
    prompts = evaluate.prompts_for(task, fmt, tok, rows, prompt_budget(read_json(adapter_dir / "kit_adapter.json")))
    model = models.load_model(resolved, adapter_dir=str(adapter_dir))
    scorer = evaluate.HFScorer(model, tok, args.batch_size, progress=False)
    scorer.score(prompts[:2], task.labels)  # warm-up, so neither side pays first-call costs
    scorer.generate(prompts[:2], fmt.stop, 2)

    def timed(fn):
        start = time.perf_counter()
        return fn(), time.perf_counter() - start

    scored, scoring_s = timed(lambda: evaluate.predict(scorer, task, rows, prompts))
    generated, generate_s = timed(lambda: evaluate.generate_predictions(scorer, task, fmt, rows, prompts,
                                                                        args.max_new_tokens))
    models.MIN_SHARED_PREFIX, kept = 10**9, models.MIN_SHARED_PREFIX  # no prompt is that long: sharing off
    unshared, unshared_s = timed(lambda: evaluate.predict(scorer, task, rows, prompts))
    models.MIN_SHARED_PREFIX = kept
    _, prompt_pass_s = timed(lambda: scorer.generate(prompts, fmt.stop, 1))

    n = len(rows)
    agree = sum(s["prediction"] == g["prediction"] for s, g in zip(scored, generated)) / n
    valid = sum(g["valid"] for g in generated) / n
    acc_s = sum(s["correct"] for s in scored) / n
    acc_g = sum(g["correct"] for g in generated) / n
    print(f"{n} holdout tickets, batch {args.batch_size}, {torch.get_num_threads()} threads, device "
          f"{models.pick_device()}, adapter {args.adapter_name}")
    print(f"label scoring:      {scoring_s:7.1f} s  {n / scoring_s:6.2f} ex/s  accuracy {acc_s:.1%}")
    print(f"generate and parse: {generate_s:7.1f} s  {n / generate_s:6.2f} ex/s  accuracy {acc_g:.1%}  "
          f"parseable answers {valid:.1%} (max_new_tokens={args.max_new_tokens})")
    print(f"same prediction on {agree:.1%} of tickets")
    same = sum(a["prediction"] == b["prediction"] for a, b in zip(scored, unshared)) / n
    print(f"where the time goes: scoring without the shared prefix {unshared_s:.1f} s ({n / unshared_s:.2f} ex/s, same "
          f"prediction {same:.1%}); generate's prompt pass alone (max_new_tokens=1) {prompt_pass_s:.1f} s, "
          f"decoding the rest {generate_s - prompt_pass_s:.1f} s")
    if args.gguf:
        served(args, run_dir, tok, task, fmt, rows, prompts, timed)
    x, y = n / scoring_s, n / generate_s
    print(f"scoring_ex_per_s={x:.2f} generate_ex_per_s={y:.2f} ratio={x / y:.2f}")


def served(args, run_dir, tok, task, fmt, rows, prompts, timed):
    """Both ways again through llama.cpp's OpenAI-compatible server (its own prompt cache, one request at a time)."""
    from kit.scoring import EndpointScorer, serve

    n = len(rows)
    with serve.serve_gguf(run_dir / "export" / f"model-{args.gguf}.gguf", n_ctx=512) as url:
        ep = EndpointScorer.for_tokenizer(url, tok, task.labels)
        ep.score(prompts[:2], task.labels)  # warm-up
        scored, scoring_s = timed(lambda: evaluate.predict(ep, task, rows, prompts))
        generated, generate_s = timed(lambda: evaluate.generate_predictions(ep, task, fmt, rows, prompts,
                                                                            args.max_new_tokens))
    agree = sum(s["prediction"] == g["prediction"] for s, g in zip(scored, generated)) / n
    print(f"served {args.gguf} by llama.cpp: label scoring {scoring_s:.1f} s ({n / scoring_s:.2f} ex/s), generate and "
          f"parse {generate_s:.1f} s ({n / generate_s:.2f} ex/s), ratio {generate_s / scoring_s:.2f}, same prediction "
          f"{agree:.1%}, first lane token outside the top {ep.top_logprobs} for {ep.outside_top_k} label(s)")


if __name__ == "__main__":
    main()
