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
# # 05 · Export: a GGUF and Modelfile for Ollama, checked against the adapter
#
# This stage merges the adapter into the base model, converts it to GGUF with llama.cpp's converter, writes an Ollama
# `Modelfile` whose `TEMPLATE` comes from the same chat format used in training, and runs the holdout through
# llama.cpp to prove the exported file answers like the adapter did.
#
# **Objective** a model file you can hand to Ollama without the classic "gibberish after export" surprise.
# **Needs** the adapter (03) and its holdout predictions (04). **Produces** `export/model-*.gguf`, `export/Modelfile`,
# `export/parity.json`, `export/MODEL_CARD.md`. **Hardware** CPU, a few minutes.
#
# The adapter is merged into a full-precision copy of the base, never into 4-bit weights: rounding the merged
# weights to 4 bits (or even to bf16) erases part of the small LoRA update, and the exported model would no longer
# answer like the one you evaluated. Quantization happens after the merge, and the parity check measures its effect.

# %% tags=["parameters"]
run_dir: str = "../papermill_runs/lab"  # where this run's files live
model: str = "embedded:gemma3-270m"  # the base model the adapter was trained on
adapter_name: str = "default"  # adapters/<adapter_name>/
gguf_types: list = ["f16", "q8_0"]  # any of f16, q8_0, q4_k_m
modelfile_gguf: str = "q8_0"  # the GGUF the Modelfile's FROM points at
parity_threshold: float = 0.99  # required agreement with the adapter for f16 and q8_0
max_examples: int = 0  # parity on the first N holdout rows (0: all that 04 scored; past 300, or 200/100 for extract/reply, a seeded sample)
ollama_name: str = "kit-ticket-router"  # name for `ollama create`
adapter_variant: bool = True  # also export base GGUF + LoRA adapter GGUF (Modelfile.adapter) and check its parity
license_file: str = ""  # text file with the base model's license, when kit cannot find it (own models)
previous_run_dir: str = ""  # run directory of the last release; the release notes compare with it
promote: bool = True  # a verified export becomes the tenant's live adapter version (the registry, used by 06)
tenant: str = "default"  # registry entry: one live version per tenant
registry_dir: str = ""  # empty: registry/ beside the run directories (papermill_runs/registry)
advanced: dict = {}  # other ExportConfig fields by name: num_ctx, the Modelfile context length (README, Configuration)

# %%
from pathlib import Path
from IPython.display import display
from kit import settings
from kit.report import tables
from kit.stages import export

cfg = export.ExportConfig(run_dir=run_dir, model=model, adapter_name=adapter_name, gguf_types=tuple(gguf_types),
                          modelfile_gguf=modelfile_gguf, parity_threshold=parity_threshold, max_examples=max_examples,
                          ollama_name=ollama_name, adapter_variant=adapter_variant, license_file=license_file,
                          previous_run_dir=previous_run_dir, promote=promote, tenant=tenant,
                          registry_dir=registry_dir, **settings.checked(export.ExportConfig, advanced))
cfg

# %%
result = export.run(cfg)
tables.parity_table(result.parity)

# %% [markdown]
# Each row is one way to ship the model: `agreement` is the share of holdout tickets where llama.cpp answers like the
# adapter did in transformers: the same lane (classify), the same JSON object (extract); for replies it is how alike the
# two replies are (ROUGE-L of llama.cpp's reply against the adapter's), with `text_agreement` the share identical token
# for token (`first_divergences` in `export/parity.json` say where the others part). For extract and reply the row also
# holds the GGUF's own holdout score beside the adapter's (`holdout_*` vs `adapter_*`): a long greedy answer can part
# from the adapter's at a near-tie that 8-bit rounding flips (on the synthetic field updates f16 agreed on 100% of rows,
# q8_0 on 97%), so the two scores say whether that changes quality. f16 and q8_0 must reach the threshold; q4_K_M (smallest file) is
# reported so you can decide whether its size is worth its agreement. The `adapter` row is the adapter-only variant:
# the untouched base GGUF with the LoRA adapter applied at load time.
#
# The Modelfile. Its `TEMPLATE` and `stop` lines are rendered from the chat format the adapter was trained with (a
# test renders this TEMPLATE with Go's text/template, Ollama's engine, and compares it with the training prompt).
# `LICENSE` carries the base model's full license text; it is long, so only the first lines are printed here.

# %%
text = Path(result.paths["modelfile"]).read_text()
print(text[: text.index('LICENSE') + 300], "…")

# %% [markdown]
# ## One base, many adapters
#
# `Modelfile.adapter` points at the base model and this run's adapter (`adapter-<name>-f16.gguf`, a few MB). A team
# serving several tenants keeps one base and one adapter per tenant; honouring a tenant's erasure request means
# deleting that adapter. Read its header: not every Ollama version and architecture accepts `ADAPTER`.
#
# Outgrowing one process per tenant: `python -m kit.scoring.tenants --base export/base-q8_0.gguf --adapter
# acme=export/adapter-default-f16.gguf --adapter other=<its adapter>` serves one base with every tenant's adapter
# behind one OpenAI-compatible `/v1/completions`; each request names its tenant in `model`, and only the adapters
# (a few MB each) are switched. `kit.scoring.serve.serve_tenants` starts it from Python, and the endpoint scorer of 04
# evaluates one tenant through it (`EndpointScorer(..., model="acme")`).

# %%
if "modelfile_adapter" in result.paths:
    print(Path(result.paths["modelfile_adapter"]).read_text().split('TEMPLATE')[0])

# %% [markdown]
# Parity must hold before anyone ships the file.

# %%
assert result.verified, f"export parity failed: {result.parity['types']}"
print(f"export verified: llama.cpp answers like the adapter on {result.parity['n']} holdout tickets"
      + (f" (a seeded sample of the {result.parity['of_scored']} that 04 scored)"
         if result.parity.get("sampled") else ""))

# %% [markdown]
# ## Model card and release notes
#
# `MODEL_CARD.md` is written from the run's own records (scope, license note, provenance, audit, metrics, parity), with
# a NIST AI RMF mapping (govern, map, measure, manage). `RELEASE_NOTES.md` compares with `previous_run_dir`.

# %%
from IPython.display import Markdown
Markdown(Path(result.paths["model_card"]).read_text())

# %% [markdown]
# ## Checksums
#
# `export/SHA256SUMS.json` lists the sha256 of every exported file. Whoever receives the files can re-check them with
# `python -m kit verify <run>/export`, which refuses changed or missing files.

# %%
checked = export.verify(Path(run_dir) / "export")
print(f"{len(checked)} files verified:", ", ".join(checked))

# %% [markdown]
# ## Run it in Ollama
#
# With Ollama installed, these two commands load and query the model. Where `ollama` is on PATH, the next cell runs
# them on a few holdout tickets and compares the answers with the adapter's; elsewhere it says it did not run.

# %%
print("\n".join(export.ollama_commands(run_dir, ollama_name)))
export.ollama_check(run_dir, ollama_name)

# %% [markdown]
# ## The registry: this export goes live
#
# A verified export becomes the tenant's live adapter version in the registry (`papermill_runs/registry/<tenant>/`):
# a copy of the adapter, the run it came from, its holdout score and the GGUF it was checked in. The registry's
# `Modelfile` always points at the live version, so `ollama create <name> -f papermill_runs/registry/<tenant>/Modelfile`
# serves what the registry says. Stage 06 watches the traffic and rolls back to the version before when quality drops.

# %%
from kit import adapters
if result.promoted:
    print(f"live for tenant '{tenant}': {result.promoted['version']} (run {result.promoted['run']})")
    registry = adapters.location(run_dir, registry_dir)
    display(adapters.table(registry, tenant))
else:
    print("not promoted:", "promote=False" if not promote else "the export did not pass parity")
