"""One LoRA training step on Gemma 3 270M (CPU, float32): where kit's recipe choices come from, measured side by side.

Variants are given as attn:lora_layers, e.g. `sdpa:0` (LoRA in all layers), `sdpa:6` (top 6 layers), `eager:0`.
Each trains 3 timed steps (after one warm-up step) on a fixed batch of 8 x 150 tokens with kit's answer-only loss.

Run: .venv/bin/python bench/lora_step.py sdpa:0 eager:0 sdpa:6 sdpa:4   (about 3 minutes on 2 quiet cores)
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def tokens_per_s(resolved, attn: str, layers: int, batch: int = 8, length: int = 150, steps: int = 3) -> float:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from kit.stages import train

    torch.manual_seed(0)
    ids = torch.randint(100, 20000, (batch, length))
    labels = torch.full_like(ids, -100)
    labels[:, -3:] = ids[:, -3:]
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    model = AutoModelForCausalLM.from_pretrained(resolved.path, dtype=torch.float32, attn_implementation=attn)
    n = model.config.num_hidden_layers
    lora = LoraConfig(r=16, lora_alpha=32, target_modules=LINEAR, task_type="CAUSAL_LM",
                      layers_to_transform=list(range(n - layers, n)) if layers else None)
    model = get_peft_model(model, lora)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        loss, _ = train.completion_loss(model, inputs)
        loss.backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - start)
    return batch * length / min(times[1:])


def main() -> None:
    from kit import models

    resolved = models.resolve()
    variants = sys.argv[1:] or ["sdpa:0", "eager:0", "sdpa:6", "sdpa:4"]
    results = {}
    for v in variants:
        attn, layers = v.split(":")
        results[v] = tokens_per_s(resolved, attn, int(layers))
        print(f"{v:10} {results[v]:7.1f} tokens/s", flush=True)
    first = variants[0]
    print(" ".join(f"{v}={results[v]:.1f}" for v in variants), f"ratio_last_to_first={results[variants[-1]] / results[first]:.2f}")


if __name__ == "__main__":
    main()
