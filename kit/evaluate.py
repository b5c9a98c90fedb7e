"""Evaluate stage: how good the tuned adapter is on the holdout, against the base model and a trivial baseline.

In: `data/holdout.jsonl`, `data/task.json`, `adapters/<adapter_name>/`. Out: `eval/predictions.jsonl` (one line per
holdout row and model: prediction, confidence, correct), `eval/metrics.json` (accuracy with a bootstrap 95%
interval, macro-F1, per-class precision/recall, confusion matrices) and `eval/confusion.png`.

Labels are scored, not generated: one forward pass per prompt gives the probability of every label's first token,
which is exactly the choice greedy decoding would make among the labels. When two labels share a first token the
whole label sequences are scored instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kit import KitError
from kit.io import read_json, read_jsonl, write_json, write_jsonl
from kit.task import Task


class EvalError(KitError):
    """Evaluation inputs are missing or inconsistent."""


@dataclass(frozen=True)
class EvalConfig:
    run_dir: str
    model: str
    adapter_name: str = "default"
    max_examples: int = 0  # 0 = the whole holdout
    max_length: int = 192  # same budget as training, so prompts are cut the same way
    batch_size: int = 16
    bootstrap_samples: int = 1000
    seed: int = 0


def label_first_tokens(tokenizer, labels) -> list[int] | None:
    """First token id of each label as the model would write it, or None when two labels share one."""
    firsts = [tokenizer(lab, add_special_tokens=False)["input_ids"][0] for lab in labels]
    return firsts if len(set(firsts)) == len(firsts) else None


def score_labels(model, tokenizer, prompts: list[str], labels, batch_size: int = 16, progress: bool = True):
    """Probabilities over `labels` for each prompt (rows sum to 1), from the model's next-token distribution."""
    import torch
    from tqdm.auto import tqdm

    firsts = label_first_tokens(tokenizer, labels)
    out = []
    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    for i in tqdm(range(0, len(prompts), batch_size), desc="scoring", disable=not progress):
        batch = prompts[i:i + batch_size]
        if firsts is not None:
            enc = tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=True).to(device)
            with torch.no_grad():
                logits = model(**enc, logits_to_keep=1).logits[:, -1, :].float()
            out.append(torch.log_softmax(logits, -1)[:, firsts])
        else:
            out.append(_score_full(model, tokenizer, batch, labels, device))
    logp = torch.cat(out)
    return torch.softmax(logp, -1).cpu().numpy()  # renormalized over the labels only


def _score_full(model, tokenizer, prompts, labels, device):
    """Sum of token log-probabilities of each whole label after each prompt (labels sharing a first token)."""
    import torch

    tokenizer.padding_side = "right"
    rows = []
    for p in prompts:
        p_len = len(tokenizer(p, add_special_tokens=True)["input_ids"])
        enc = tokenizer([p + lab for lab in labels], return_tensors="pt", padding=True,
                        add_special_tokens=True).to(device)
        with torch.no_grad():
            logp = torch.log_softmax(model(**enc).logits.float(), -1)
        scores = []
        for j in range(len(labels)):
            ids = enc["input_ids"][j]
            n = int(enc["attention_mask"][j].sum())
            scores.append(sum(logp[j, t - 1, ids[t]] for t in range(p_len, n)))
        rows.append(torch.stack(scores))
    tokenizer.padding_side = "left"
    return torch.stack(rows)


def metrics(y_true: list[str], y_pred: list[str], labels, bootstrap_samples: int = 1000, seed: int = 0) -> dict:
    """Accuracy with a percentile-bootstrap 95% interval, macro-F1, per-class precision/recall, confusion matrix."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    labels = list(labels)
    correct = np.array([t == p for t, p in zip(y_true, y_pred)], dtype=float)
    rng = np.random.default_rng(seed)
    boots = [correct[rng.integers(0, len(correct), len(correct))].mean() for _ in range(bootstrap_samples)]
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {
        "n": len(y_true), "accuracy": float(accuracy_score(y_true, y_pred)),
        "accuracy_ci95": [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))],
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "per_class": {lab: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                      for i, lab in enumerate(labels)},
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def predict(model, tokenizer, fmt, task: Task, rows: list[dict], max_length: int, batch_size: int) -> list[dict]:
    prompts = [task.prompt(fmt, r["text"], tokenizer, max_length - 8) for r in rows]
    probs = score_labels(model, tokenizer, prompts, task.labels, batch_size)
    preds = []
    for r, pr in zip(rows, probs):
        k = int(pr.argmax())
        preds.append({"id": r["id"], "label": r["label"], "prediction": task.labels[k],
                      "confidence": round(float(pr[k]), 4), "correct": task.labels[k] == r["label"]})
    return preds


@dataclass
class EvalResult:
    metrics: dict
    paths: dict


def run(cfg: EvalConfig) -> EvalResult:
    from kit import models

    run_dir = Path(cfg.run_dir)
    adapter_dir = run_dir / "adapters" / cfg.adapter_name
    if not (adapter_dir / "adapter_config.json").exists():
        raise EvalError(f"no adapter at {adapter_dir}; run 03_train for adapter_name='{cfg.adapter_name}' first.")
    resolved = models.resolve(cfg.model)
    meta = read_json(adapter_dir / "kit_adapter.json")
    if meta["base_model_sha256"] != resolved.sha256:
        raise EvalError(f"adapter '{cfg.adapter_name}' was trained on a different base model than '{cfg.model}'; "
                        "evaluate with the model it was trained on.")
    task = Task.load(run_dir)
    rows = read_jsonl(run_dir / "data" / "holdout.jsonl")
    rows = rows[: cfg.max_examples] if cfg.max_examples else rows
    tok = models.load_tokenizer(resolved)
    fmt = resolved.chat_format
    y = [r["label"] for r in rows]

    base = models.load_model(resolved)
    base_preds = predict(base, tok, fmt, task, rows, cfg.max_length, cfg.batch_size)
    del base
    tuned = models.load_model(resolved, adapter_dir=str(adapter_dir))
    tuned_preds = predict(tuned, tok, fmt, task, rows, cfg.max_length, cfg.batch_size)

    train_labels = [r["label"] for r in read_jsonl(run_dir / "data" / "train.jsonl")]
    majority = max(task.labels, key=train_labels.count)
    results = {
        "tuned": metrics(y, [p["prediction"] for p in tuned_preds], task.labels, cfg.bootstrap_samples, cfg.seed),
        "base_zero_shot": metrics(y, [p["prediction"] for p in base_preds], task.labels, cfg.bootstrap_samples,
                                  cfg.seed),
        "majority_class": metrics(y, [majority] * len(y), task.labels, cfg.bootstrap_samples, cfg.seed),
    }
    out = run_dir / "eval"
    write_jsonl(out / "predictions.jsonl", [{"model": "tuned", **p} for p in tuned_preds]
                + [{"model": "base_zero_shot", **p} for p in base_preds])
    summary = {"labels": list(task.labels), "adapter": cfg.adapter_name, "max_length": cfg.max_length, "models": results,
               "tuned_minus_base_accuracy": results["tuned"]["accuracy"] - results["base_zero_shot"]["accuracy"]}
    write_json(out / "metrics.json", summary)
    confusion_plot(results, task.labels, out / "confusion.png")
    return EvalResult(summary, {"metrics": str(out / "metrics.json"), "predictions": str(out / "predictions.jsonl"),
                                "confusion": str(out / "confusion.png")})


def confusion_plot(results: dict, labels, path: str | Path):
    import matplotlib.pyplot as plt

    names = [m for m in ("base_zero_shot", "tuned") if m in results]
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4.2))
    for ax, name in zip(np.atleast_1d(axes), names):
        cm = np.array(results[name]["confusion"])
        ax.imshow(cm, cmap="Blues")
        for (i, j), v in np.ndenumerate(cm):
            ax.text(j, i, str(v), ha="center", va="center", color="white" if v > cm.max() / 2 else "black")
        short = [lab.replace("_", "\n") for lab in labels]
        ax.set_xticks(range(len(labels)), short, fontsize=8); ax.set_yticks(range(len(labels)), short, fontsize=8)
        ax.set_xlabel("predicted"); ax.set_ylabel("true")
        ax.set_title(f"{name}: accuracy {results[name]['accuracy']:.0%}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
