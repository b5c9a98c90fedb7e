"""Label scoring with many labels whose names open alike ("card_arrival", "card_declined", ...), as intent sets
of 50–80 intents do: kit's tree layout against prompt + label for every pair, side by side, same prompts.

Labels that share a first token cannot be read off one next-token distribution, so each is scored whole. Pair by
pair, every label re-reads the prompt's own tokens (all but the shared instruction): 70 labels cost 70 prompt passes.
The tree layout (`kit.scoring.hf._continuations_per_prompt`) runs each prompt once into its own cache and every
label on top of it in one row, shared openings once. Both give the same log-probabilities up to float rounding
(tests/test_evaluate.py, tests/test_families.py); this prints how far apart they are here too. In float32 that is
~3e-5; in bfloat16 rounding moves either layout by up to ~0.4 in log-probability from the float32 figures (measured
on 12 prompts x 70 labels: tree 0.34, pairs 0.41), so the two bf16 columns differ by that much and an untuned
model's near-tied labels can swap places.

The labels are made-up bank intents (10 openings x 7 endings), the messages the first rows of
../shared/devdata/routing/test.jsonl, the model the embedded one (untuned: speed, not accuracy, is measured).

Below `kit.scoring.hf.TREE_FROM` labels kit itself goes pair by pair (batched pairs win there); this bench forces
each layout, so it also shows that crossover.

Run: .venv/bin/python bench/label_scoring.py [--labels 3,5,10,30,70] [--prompts 40] [--dtype bfloat16]   (~4 min)
Last line: tree_prompts_per_s=<x> pairs_prompts_per_s=<y> ratio=<x/y>   (at the largest label count)
"""

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

OPENINGS = ["card", "transfer", "top_up", "payment", "refund", "balance", "exchange", "pin", "account", "cash"]
ENDINGS = ["arrival", "declined", "pending", "failed", "not_received", "limits", "fee_charged"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--labels", default="3,5,10,30,70")
    ap.add_argument("--prompts", type=int, default=40)
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    args = ap.parse_args()

    import numpy as np

    from kit import models
    from kit.scoring import hf

    resolved = models.resolve()
    tok = models.load_tokenizer(resolved)
    model = models.load_model(resolved, dtype=args.dtype).eval()
    rows = [json.loads(line)["text"] for line in (REPO.parent / "shared/devdata/routing/test.jsonl").open()]
    texts = rows[:args.prompts]
    all_labels = [f"{o}_{e}" for o, e in itertools.product(OPENINGS, ENDINGS)]
    print(f"embedded model, {args.dtype}, {len(texts)} prompts per row; prompts/s (higher is better)")
    print(f"  {'labels':>6} {'tree':>8} {'pairs':>8} {'ratio':>6} {'max |Δ log p|':>14} {'same top label':>15}")
    for n in [int(x) for x in args.labels.split(",")]:
        labels = all_labels[:n]
        instruction = "Route this message to one of these intents: " + ", ".join(labels) + ". Answer with the intent."
        prompts = [resolved.chat_format.prompt(f"{instruction}\n\n{t}") for t in texts]
        ids = tok(prompts, add_special_tokens=True)["input_ids"]
        conts = [tok(lab, add_special_tokens=False)["input_ids"] for lab in labels]
        speed, out = {}, {}
        for layout in ("tree", "pairs"):
            t = time.perf_counter()
            out[layout] = hf.continuation_logprobs(model, ids, conts, pad_id=tok.pad_token_id, trees=layout == "tree")
            speed[layout] = len(ids) / (time.perf_counter() - t)
        delta = float(np.abs(out["tree"] - out["pairs"]).max())
        same = float((out["tree"].argmax(1) == out["pairs"].argmax(1)).mean())
        print(f"  {n:>6} {speed['tree']:>8.2f} {speed['pairs']:>8.2f} {speed['tree'] / speed['pairs']:>5.1f}x "
              f"{delta:>14.4f} {same:>14.0%}")
    print(f"tree_prompts_per_s={speed['tree']:.2f} pairs_prompts_per_s={speed['pairs']:.2f} "
          f"ratio={speed['tree'] / speed['pairs']:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
