"""Model families: only what a model's chat template cannot say.

The template (the tokenizer's `chat_template`) decides how a conversation becomes text; `kit.models.chat` renders it. A
family entry adds: the strings that identify its template, its end-of-turn stop strings (the first one closes an
answer in training; all of them stop generation in llama.cpp and Ollama), whether it has a system role, fixed
template variables (a date a template would otherwise take from the clock), the LoRA targets, and what changes for a
team that picks it. Ollama's TEMPLATE is derived from the template itself (`ChatFormat.go_template`), so it is not
written here.

To add a family: one `Family(...)` in `FAMILIES` below, then `tests/test_families.py` renders its template in Python
and Go and trains a tiny model of its architecture (see the README, "Another model family").
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kit.errors import KitError


class FamilyError(KitError):
    """A model's family is not known here, or its chat template cannot be used."""


@dataclass(frozen=True)
class Family:
    name: str
    title: str  # the models it covers, for people
    markers: tuple[str, ...]  # strings the family's chat template writes; all must appear
    model_types: tuple[str, ...]  # transformers `model_type`s, to break ties between families with one template style
    stop: tuple[str, ...]  # end-of-turn strings; the first that follows an answer closes it in training
    system_in_user: bool = False  # no system role: the system text opens the first user turn
    system_joiner: str = "\n\n"
    template_vars: dict = field(default_factory=dict)  # fixed variables for the template (never the clock)
    # Modules LoRA adapts. Every family here names its attention and MLP projections; Phi-3 fuses q/k/v and gate/up.
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    default_template: str = ""  # kit's own template, used only when chosen explicitly (embedded model, base models)
    notes: str = ""  # what changes for a team choosing this family


# kit's own Jinja for Gemma's turn format (the embedded GGUF carries no chat template). It writes what Google's Gemma
# 3 template writes for a system + user turn: the system text opens the first user turn, then a blank line.
_GEMMA_TEMPLATE = (
    "{{ bos_token }}"
    "{%- set sys = '' -%}"
    "{%- if messages[0]['role'] == 'system' -%}{%- set sys = messages[0]['content'] + '\\n\\n' -%}"
    "{%- set messages = messages[1:] -%}{%- endif -%}"
    "{%- for m in messages -%}"
    "{%- set role = 'model' if m['role'] == 'assistant' else 'user' -%}"
    "{%- set content = (sys if loop.first else '') + m['content'] -%}"
    "{{ '<start_of_turn>' + role + '\\n' + content + '<end_of_turn>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}{%- endif -%}"
)

# kit's documented default for a base model that ships no template: ChatML, the turn format of Qwen and SmolLM2.
# On a base model its markers are ordinary text (several tokens each); the fine-tune teaches them.
CHATML_TEMPLATE = (
    "{%- for m in messages -%}"
    "{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)

FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("gemma", "Gemma 2 / Gemma 3 (Google)", ("<start_of_turn>",), ("gemma", "gemma2", "gemma3", "gemma3_text"),
           ("<end_of_turn>",), system_in_user=True, default_template=_GEMMA_TEMPLATE,
           notes="Gemma Terms of Use (use restrictions pass on to anyone you share the model with); 262k-token "
                 "vocabulary, so the output head dominates small models; Gemma 3 runs on Ollama's own engine."),
    Family("llama3", "Llama 3.x (Meta)", ("<|start_header_id|>", "<|eot_id|>"), ("llama",), ("<|eot_id|>", "<|eom_id|>"),
           # Llama 3.1–3.3 templates print "Today Date:" from the clock; a fixed date keeps training, evaluation and
           # the exported model on one prompt (the value is the template's own fallback).
           template_vars={"date_string": "26 Jul 2024"},
           notes="Llama Community License (700M monthly-user limit, 'Built with Llama' attribution); 128k vocabulary."),
    Family("smollm3", "SmolLM3 (Hugging Face)", ("<|im_start|>", "Reasoning Mode"), ("smollm3",), ("<|im_end|>",),
           template_vars={"enable_thinking": False},
           notes="Apache-2.0; a reasoning model: kit renders it with thinking off, so answers come without a trace."),
    Family("chatml", "Qwen 2.5 / Qwen 3 (Alibaba), SmolLM2, and base models given kit's ChatML default",
           ("<|im_start|>",), ("qwen2", "qwen3", "llama"), ("<|im_end|>",),
           template_vars={"enable_thinking": False}, default_template=CHATML_TEMPLATE,
           notes="Qwen 2.5: Apache-2.0 for most sizes (3B and 72B have their own licenses); the template adds a "
                 "default system text when none is given. SmolLM2: Apache-2.0."),
    Family("mistral", "Mistral 7B / Nemo / Small (Mistral AI)", ("[INST]",), ("mistral", "llama"), ("</s>", "[INST]"),
           # Mistral's templates put the system text into the *last* user turn, so once an answer follows, the same
           # template drops it from the user turn: kit joins it to the user text itself, as the template would.
           system_in_user=True,
           notes="Apache-2.0 for Mistral 7B and Nemo; no system role (the system text opens the user turn)."),
    Family("phi3", "Phi-3 / Phi-3.5 (Microsoft)", ("<|user|>", "<|end|>"), ("phi3",), ("<|end|>", "<|endoftext|>"),
           target_modules=("qkv_proj", "o_proj", "gate_up_proj", "down_proj"),
           notes="MIT; fused q/k/v and gate/up projections."),
)}


def get(name: str) -> Family:
    if name not in FAMILIES:
        raise FamilyError(f"Unknown model family '{name}'. Known families: {', '.join(FAMILIES)}.")
    return FAMILIES[name]
