# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · License: may we use this base model for this purpose?
#
# This stage writes a license note for the base model: its license, what it allows, the intended use, and who
# approved it. Training (03) refuses to start without an approved note for the same weights.
#
# **Objective** keep the paper trail that legal review asks for, before any training. **Needs** a model spec and your
# intended use. **Produces** `license_note.json` and `license_note.md`. **Hardware** CPU; the first run converts the
# embedded Gemma 3 270M to a cached checkpoint (about a minute, once).
#
# **Your model, from where you have it.** `model` takes the embedded model, a checkpoint directory, a Hugging Face id
# in your local cache, a `.gguf` file, or `ollama:<name>[:tag]` for a model already pulled into Ollama (kit finds its
# GGUF through Ollama's manifest). Gemma 2/3, Llama 3.x, Qwen 2.5/3, SmolLM2/3, Mistral and Phi-3 work; the model's own
# chat template decides every prompt, and the family printed below adds what the template cannot say. Another family
# changes more than the license: a bigger model trains slower (on 2 CPU cores a LoRA step of the demo's size takes
# about 0.6 s for the embedded 270M model, an estimated 2 s for 0.5B, 8 s for 1.5B and 40 s for 7B), its export is
# larger (choose `q4_k_m` in 05 for 7B-class models, `q8_0` below 1B), and its license has other conditions (read them
# below). The note records where the weights came from and their sha256.

# %% tags=["parameters"]
run_dir: str = "../papermill_runs/lab"  # where this run's files live
model: str = "embedded:gemma3-270m"  # embedded:gemma3-270m, a checkpoint directory, a Hugging Face id, a .gguf file, or ollama:<name>[:tag]
intended_uses: list = ["commercial_use", "customer_facing_output"]  # any of the six license questions
approved: bool = False  # set True only after the approver has read the note
approver: str = ""  # name of the person who approved
license_id: str = ""  # registry entry to use; empty: look it up from the model id
revision: str = ""  # model revision (hub commit, package version); empty: detected where possible
date_obtained: str = ""  # when you obtained the weights, YYYY-MM-DD; empty: today
license_name: str = ""  # only for a model outside the registry: the license's name
license_url: str = ""  # only for a model outside the registry: where the license text is
answers: dict = {}  # only for a model outside the registry: yes/no/conditional for each of the six questions

# %%
from pathlib import Path
from IPython.display import Markdown
from kit import models
from kit.stages import licenses

cfg = licenses.LicenseConfig(run_dir=run_dir, model=model, intended_uses=tuple(intended_uses), approved=approved,
                             approver=approver, license_id=license_id, revision=revision, date_obtained=date_obtained,
                             license_name=license_name, license_url=license_url, answers=answers)
resolved = models.resolve(cfg.model)
family = resolved.chat_format.family
print(f"weights: {resolved.source}")
print(f"family: {family.name} ({family.title}); stop strings {list(family.stop)}")
print(family.notes)

# %% [markdown]
# ## The note
#
# The answers come from `kit/registry/licenses.yaml`, each condition with its source. Read the conditions: Gemma's
# terms, for example, travel with the weights when you redistribute a fine-tuned model.

# %%
note = licenses.run(cfg, resolved)
Markdown((Path(run_dir) / "license_note.md").read_text())

# %% [markdown]
# ## Approve
#
# The approver reads the note above, then ticks the box and writes the note again (in JupyterLab). Headless runs take
# `approved` and `approver` from the parameters.

# %%
licenses.approval_widget(cfg, resolved)

# %% [markdown]
# ## Gate check
#
# The same check the training stage runs. An unapproved note shows the reason here.

# %%
ok, reason = licenses.gate_status(run_dir, resolved.sha256)
print("Training may start." if ok else f"Training will refuse to start: {reason}")

# %% [markdown]
# ## Files written
#
# `license_note.json`, `license_note.md`. Next: **02_prepare** turns raw tickets into redacted training data.

# %%
print(note["license"], "| approved:", note["approved"], "| conflicts:", note["conflicts"] or "none")
