"""Which dtype this CPU computes fastest: matmul throughput and one LoRA training step, float32 vs bfloat16, side by side.

kit decides the same question at run time with a shorter matmul (`kit.hardware.compute_dtype`); this prints both
measurements and what kit's rule chose here, so the two can be compared.

Run: .venv/bin/python bench/cpu_dtype.py   (about 2 minutes on 2 cores). Prints what it measured; gates nothing.
Last line: fp32_tokens_per_s=<x> bf16_tokens_per_s=<y> ratio=<x/y>
"""

import time

import torch


def matmul_gflops(dtype, n=512, repeats=5):
    a, b = torch.randn(n, 640, dtype=dtype), torch.randn(640, 2048, dtype=dtype)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n * 640 * 2048 * repeats / (time.perf_counter() - start) / 1e9


def lora_step_tokens_per_s(dtype, batch=4, length=96, steps=2):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from kit import models

    resolved = models.resolve()
    model = AutoModelForCausalLM.from_pretrained(resolved.path, dtype=dtype)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"))
    model.train()
    ids = torch.randint(10, 5000, (batch, length))
    keep = torch.arange(length - 4, length - 1)
    model(input_ids=ids[:1, :16], logits_to_keep=1)  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        logits = model(input_ids=ids, logits_to_keep=keep).logits.float()
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, -3:].reshape(-1))
        loss.backward()
    return batch * length * steps / (time.perf_counter() - start)


if __name__ == "__main__":
    print(f"threads: {torch.get_num_threads()}")
    g32, g16 = matmul_gflops(torch.float32), matmul_gflops(torch.bfloat16, repeats=1)
    print(f"matmul 512x640 @ 640x2048: float32 {g32:.1f} GFLOP/s · bfloat16 {g16:.2f} GFLOP/s · bf16/fp32 {g16 / g32:.2f}x")
    t32 = lora_step_tokens_per_s(torch.float32)
    t16 = lora_step_tokens_per_s(torch.bfloat16, steps=1)
    print(f"LoRA step on Gemma 3 270M (batch 4 x 96 tokens): float32 {t32:.1f} tokens/s · bfloat16 {t16:.1f} tokens/s")
    from kit import hardware

    choice = hardware.compute_dtype("auto", "cpu")
    print(f"{hardware.cpu_name()} ({hardware.cpu_kind()}): kit's dtype=auto picks {choice.dtype}: {choice.reason}")
    print(f"fp32_tokens_per_s={t32:.1f} bf16_tokens_per_s={t16:.1f} ratio={t32 / t16:.2f}")
