"""Generated answers in llama.cpp (05's parity and 06's monitoring of extract and reply): one prompt at a time, as
llama-cpp-python's own completion writes them, against several decoded together, side by side on the same prompts.

One at a time, every answer token is a decode that reads all the weights (the embedded Gemma 3's 262k-row output
head included) for one row. `LlamaCppScorer(sequences=N)` decodes up to N answers together, each in a key/value cache
of its own, so a step reads the weights once for all the answers still being written. Both use the same GGUF and
greedy decoding; they may differ by llama.cpp's rounding between batch sizes, at a near-tie (this prints how often).
The untuned model's next tokens are often near-ties: 2026-12-07 (2 AMX cores), 7 of 16 answers were the same alone and
8 together (15 of 16 at 8 and at 16 together), each pair parting where the top two logits were 0.02-0.48 apart; a
tuned model agrees far more (96 of 100 STAR replies from kit's reply course, q8_0).

The prompts are customer messages from ../shared/devdata/replies/test.jsonl (STAR) in the embedded model's chat
format; the model is the embedded GGUF (q4_K_M, untuned, so most answers run to the token limit: speed, not quality).

Run: .venv/bin/python bench/llamacpp_generate.py [--prompts 40] [--max-new 128] [--sequences 8,32]   (~3 min)
Last line: together_answers_per_s=<x> alone_answers_per_s=<y> ratio=<x/y>   (at the largest --sequences)
"""

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=40)
    ap.add_argument("--max-new", type=int, default=128)
    ap.add_argument("--sequences", default="8,32")
    args = ap.parse_args()

    from kit import models
    from kit.scoring.llamacpp import LlamaCppScorer

    fmt = models.resolve().chat_format
    gguf = models.embedded_gguf_path()
    texts = [json.loads(line)["input"] for line in (REPO.parent / "shared/devdata/replies/test.jsonl").open()]
    prompts = [fmt.prompt(t, "Reply to the customer's message as the support agent.") for t in texts[:args.prompts]]
    stop = list(fmt.stop)
    print(f"embedded GGUF ({gguf.name}), {len(prompts)} prompts, up to {args.max_new} new tokens; seconds (lower is "
          "better)")

    llm = LlamaCppScorer(gguf, n_ctx=1024, trees=False).llm
    start = time.perf_counter()
    alone = []
    for p in prompts:  # what kit did before answers were decoded together
        llm.reset()
        alone.append(llm(p, max_tokens=args.max_new, temperature=0.0, top_k=1, stop=stop)["choices"][0]["text"].strip())
    alone_s = time.perf_counter() - start
    longest = max(len(llm.tokenize(p.encode(), add_bos=True, special=True)) for p in prompts)
    del llm
    chars = sum(len(a) for a in alone)
    print(f"  {'how':>14} {'seconds':>8} {'answers/s':>10} {'speed-up':>9} {'same answer':>12}")
    print(f"  {'one at a time':>14} {alone_s:>8.1f} {len(prompts) / alone_s:>10.2f} {'1.0x':>9} {'':>12}")
    together_s = alone_s
    for n in [int(x) for x in args.sequences.split(",")]:
        scorer = LlamaCppScorer(gguf, n_ctx=longest + args.max_new, sequences=n)
        start = time.perf_counter()
        together = scorer.generate(prompts, stop, args.max_new)
        together_s = time.perf_counter() - start
        del scorer
        same = sum(a == b for a, b in zip(alone, together)) / len(prompts)
        print(f"  {f'{n} together':>14} {together_s:>8.1f} {len(prompts) / together_s:>10.2f} "
              f"{alone_s / together_s:>8.1f}x {same:>12.0%}")
    print(f"  ({chars} characters written one at a time)")
    print(f"together_answers_per_s={len(prompts) / together_s:.2f} alone_answers_per_s={len(prompts) / alone_s:.2f} "
          f"ratio={alone_s / together_s:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
