"""Labels scored whole in llama.cpp (05's parity, 06's monitoring): one tree per prompt against walking the labels
one opening at a time, side by side on the same prompts.

Intent sets of 50-150 labels open alike ("card_arrival", "card_declined", ...), so each label is scored whole on
the prompt's key/value cache. Walked one opening at a time, every opening is its own single-token decode (~15 ms
each on 2 cores, the 262k-row output head included). As a tree (`LlamaCppScorer(trees=True)`, the default), every
label is a llama.cpp sequence sharing the prompt's cells and all openings run in one decode. Both read the same
GGUF; they differ by llama.cpp's own rounding between batch sizes (this prints how much).

The labels are made-up bank intents (openings x endings), the messages the first rows of
../shared/devdata/routing/test.jsonl, the model the embedded GGUF (q4_K_M, untuned: speed, not accuracy).

Run: .venv/bin/python bench/llamacpp_labels.py [--labels 10,77,150] [--prompts 16]   (~3 min)
Last line: tree_prompts_per_s=<x> walk_prompts_per_s=<y> ratio=<x/y>   (at the largest label count)
"""

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

OPENINGS = ["card", "transfer", "top_up", "payment", "refund", "balance", "exchange", "pin", "account", "cash", "atm",
            "direct_debit", "virtual_card", "beneficiary", "identity", "passcode", "apple_pay", "country", "cheque",
            "loan", "mortgage", "savings"]
ENDINGS = ["arrival", "declined", "pending", "failed", "not_received", "limits", "fee_charged"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--labels", default="10,77,150")
    ap.add_argument("--prompts", type=int, default=16)
    args = ap.parse_args()

    import numpy as np

    from kit import models
    from kit.scoring.llamacpp import LlamaCppScorer

    fmt = models.resolve().chat_format
    gguf = models.embedded_gguf_path()
    texts = [json.loads(line)["text"] for line in (REPO.parent / "shared/devdata/routing/test.jsonl").open()]
    all_labels = [f"{o}_{e}" for o, e in itertools.product(OPENINGS, ENDINGS)]
    print(f"embedded GGUF ({gguf.name}), {args.prompts} prompts per row; prompts/s (higher is better)")
    print(f"  {'labels':>6} {'tree':>8} {'walk':>8} {'ratio':>6} {'max |Δ p|':>10} {'same top label':>15}")
    rates = {}
    for n in [int(x) for x in args.labels.split(",")]:
        labels = all_labels[:n]
        prompts = [fmt.prompt(t, f"Assign the text to exactly one of {n} labels. Answer with the label only.")
                   for t in texts[:args.prompts]]
        probs = {}
        for trees in (True, False):
            scorer = LlamaCppScorer(gguf, trees=trees)
            scorer.score(prompts[:1], labels)  # warm-up: the instruction's cache, llama.cpp's buffers
            start = time.perf_counter()
            probs[trees] = scorer.score(prompts, labels)
            rates[trees] = len(prompts) / (time.perf_counter() - start)
            del scorer
        same = float(np.mean(probs[True].argmax(1) == probs[False].argmax(1)))
        print(f"  {n:>6} {rates[True]:>8.2f} {rates[False]:>8.2f} {rates[True] / rates[False]:>5.1f}x "
              f"{np.abs(probs[True] - probs[False]).max():>10.1e} {same:>15.0%}")
    print(f"tree_prompts_per_s={rates[True]:.2f} walk_prompts_per_s={rates[False]:.2f} "
          f"ratio={rates[True] / rates[False]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
