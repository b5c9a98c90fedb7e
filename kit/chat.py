"""Chat formats: the single source of truth for how a conversation becomes text.

In: a system instruction, a user message and (for training) the answer. Out: the exact text the model sees, plus
the same format written three more ways: a Jinja `chat_template` for the tokenizer (and so the GGUF metadata), a Go
text/template for Ollama's `TEMPLATE`, and the stop strings. Training, evaluation, export and the parity check all
render through one `ChatFormat`, so the exported model is prompted the way it was trained.

Rendered text never contains the BOS token: the tokenizer adds it (transformers with `add_special_tokens=True`,
llama.cpp and Ollama from the GGUF's `add_bos_token`). Rendering it twice is a classic silent fine-tune bug.
"""

from __future__ import annotations

from dataclasses import dataclass


class ChatFormatError(ValueError):
    """A model family has no chat format here, or a message cannot be rendered."""


@dataclass(frozen=True)
class ChatFormat:
    name: str
    turn_start: str  # opens a turn; followed by the role name and a newline
    turn_end: str  # closes a turn; also the stop string at inference
    user_role: str
    model_role: str
    system_joiner: str  # families without a system role prepend the system text to the first user turn

    def prompt(self, user: str, system: str = "") -> str:
        """Text up to the point where the model starts its answer."""
        content = f"{system}{self.system_joiner}{user}" if system else user
        return (f"{self.turn_start}{self.user_role}\n{content}{self.turn_end}\n"
                f"{self.turn_start}{self.model_role}\n")

    def completion(self, answer: str) -> str:
        """The answer as the model must produce it, ending with the turn marker so the model learns to stop."""
        return f"{answer}{self.turn_end}"

    @property
    def stop(self) -> list[str]:
        return [self.turn_end, self.turn_start]

    def jinja_template(self) -> str:
        """The tokenizer's `chat_template` (HF convention: it starts with the BOS token)."""
        ts, te, j = self.turn_start, self.turn_end, self.system_joiner.replace("\n", "\\n")
        return (
            "{{ bos_token }}"
            "{%- set sys = '' -%}"
            "{%- if messages[0]['role'] == 'system' -%}{%- set sys = messages[0]['content'] + '" + j + "' -%}"
            "{%- set messages = messages[1:] -%}{%- endif -%}"
            "{%- for m in messages -%}"
            "{%- set role = '" + self.model_role + "' if m['role'] == 'assistant' else '" + self.user_role + "' -%}"
            "{%- set content = (sys if loop.first else '') + m['content'] -%}"
            "{{ '" + ts + "' + role + '\\n' + content + '" + te + "\\n' }}"
            "{%- endfor -%}"
            "{%- if add_generation_prompt -%}{{ '" + ts + self.model_role + "\\n' }}{%- endif -%}"
        )

    def go_template(self) -> str:
        """Ollama's TEMPLATE (Go text/template over .System, .Prompt, .Response)."""
        ts, te = self.turn_start, self.turn_end
        return (
            f"{ts}{self.user_role}\n"
            "{{ if .System }}{{ .System }}" + self.system_joiner + "{{ end }}{{ .Prompt }}" + f"{te}\n"
            f"{ts}{self.model_role}\n"
            "{{ .Response }}" + te
        )


GEMMA = ChatFormat(name="gemma", turn_start="<start_of_turn>", turn_end="<end_of_turn>", user_role="user",
                   model_role="model", system_joiner="\n\n")

FORMATS = {"gemma": GEMMA}


def for_model_type(model_type: str) -> ChatFormat:
    """The chat format for a transformers `model_type` (e.g. 'gemma3', 'gemma3_text')."""
    if model_type.startswith("gemma"):
        return GEMMA
    raise ChatFormatError(
        f"No chat format is defined for model type '{model_type}'. Known families: {', '.join(FORMATS)}. "
        "Add a ChatFormat for it in kit/chat.py (turn markers, roles, how the system text is placed).")
