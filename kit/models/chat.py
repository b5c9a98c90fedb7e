"""Chat formats: the model's own chat template is the single source of truth for how a conversation becomes text.

In: the tokenizer's `chat_template` (Jinja, as Hugging Face ships it with the model) and the model's family entry
(`kit.models.families`). Out: a `ChatFormat` that renders the training prompt and answer, evaluation and parity prompts,
and derives from the same template Ollama's `TEMPLATE` (Go text/template) and the stop strings. Training,
evaluation, export and the parity check all render through one `ChatFormat`, so the exported model is prompted the
way it was trained.

Rendered text never contains the BOS token: the tokenizer adds it (transformers with `add_special_tokens=True`,
llama.cpp and Ollama from the GGUF's `add_bos_token`). Rendering it twice is a classic silent fine-tune bug; a
template that writes `{{ bos_token }}` has it removed here when the tokenizer adds one itself.

Text goes into the template as given. Some official templates `| trim` it (Gemma 2, Llama 3) and Go's template
cannot, so for those families a message with surrounding whitespace renders differently in Ollama; kit's prepare
stage stores texts stripped, and callers of the exported model should send them so too.
"""

from __future__ import annotations

from functools import lru_cache

from kit.models.families import FAMILIES, Family, FamilyError

# Placeholders rendered through the template once, to find where the system text, the user text and the answer go.
# Private-use characters: no template writes them, `| trim` keeps them, no tokenizer is asked to encode them.
_SYSTEM, _USER, _ANSWER = "\ue000system\ue000", "\ue000user\ue000", "\ue000answer\ue000"


class ChatFormatError(FamilyError):
    """A chat template cannot be used for single-turn fine-tuning, or a message cannot be rendered."""


@lru_cache(maxsize=64)
def _render_cached(template: str, messages: tuple, add_generation_prompt: bool, variables: tuple) -> str:
    # transformers' own renderer: the same sandbox, `raise_exception`, `tojson` and `strftime_now` that
    # `apply_chat_template` gives a template, so kit renders exactly what Hugging Face code renders.
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, _ = render_jinja_template([[dict(m) for m in messages]], chat_template=template,
                                        add_generation_prompt=add_generation_prompt, **dict(variables))
    return rendered[0]


class ChatFormat:
    """One model's chat format: its template, its family's additions, and how its tokenizer treats BOS."""

    def __init__(self, family: Family, template: str, bos_token: str = "", eos_token: str = "",
                 adds_bos: bool = False):
        self.family = family
        self.name = family.name
        self.template = template
        self.bos_token = bos_token or ""
        self.eos_token = eos_token or ""
        self.adds_bos = adds_bos
        self._variables = tuple(sorted({"bos_token": self.bos_token, "eos_token": self.eos_token,
                                        **family.template_vars}.items()))
        self._before_answer, self._after_answer = self._answer_frame()

    def __repr__(self) -> str:
        return f"ChatFormat({self.name!r})"

    # -- rendering ---------------------------------------------------------------------------------------------
    def _messages(self, user: str, system: str) -> list[tuple]:
        if system and self.family.system_in_user:
            return [(("role", "user"), ("content", f"{system}{self.family.system_joiner}{user}"))]
        msgs = [(("role", "system"), ("content", system))] if system else []
        return msgs + [(("role", "user"), ("content", user))]

    def _render(self, messages: list[tuple], add_generation_prompt: bool) -> str:
        try:
            text = _render_cached(self.template, tuple(messages), add_generation_prompt, self._variables)
        except Exception as e:  # jinja2 raises TemplateError subclasses, templates raise via raise_exception
            raise ChatFormatError(
                f"The {self.name} chat template could not render a {'system + ' if len(messages) > 1 else ''}"
                f"user message: {type(e).__name__}: {e}. If this family has no system role, set "
                f"system_in_user=True for it in kit/models/families.py.") from None
        if self.adds_bos and self.bos_token and text.startswith(self.bos_token):
            text = text[len(self.bos_token):]
        return text

    def prompt(self, user: str, system: str = "") -> str:
        """Text up to the point where the model starts its answer."""
        return self._render(self._messages(user, system), True)

    def conversation(self, turns: list[tuple[str, str]], user: str, system: str = "") -> str:
        """Earlier (user, answer) turns, then `user`, rendered by the template as one conversation (few-shot prompts).

        With no turns this is `prompt(user, system)`. The template decides what each turn looks like, so a family
        that repeats a header or adds a default system text per conversation does so once, as the model expects.
        """
        users = [u for u, _ in turns] + [user]
        msgs = self._messages(users[0], system)
        for (_, answer), nxt in zip(turns, users[1:]):
            msgs += [(("role", "assistant"), ("content", answer)), (("role", "user"), ("content", nxt))]
        return self._render(msgs, True)

    def completion(self, answer: str) -> str:
        """The answer as the model must produce it, ending with the end-of-turn marker so the model learns to stop."""
        return f"{self._before_answer}{answer}{self._after_answer}"

    def _answer_frame(self) -> tuple[str, str]:
        """What the template writes around an answer, found by rendering a placeholder answer once.

        The prompt must be an exact prefix of the conversation that includes the answer: the training loss masks
        the prompt's tokens, and a template that renders the prompt differently once an answer follows would make
        kit mask the wrong tokens (the "all labels are -100" failure). Checked here, once, with a clear error.
        """
        for system in ("", _SYSTEM):
            msgs = self._messages(_USER, system)
            prompt = self._render(msgs, True)
            full = self._render(msgs + [(("role", "assistant"), ("content", _ANSWER))], False)
            if _USER not in prompt:
                raise ChatFormatError(f"The {self.name} chat template does not write the user's message into the "
                                      "prompt; it cannot be used to fine-tune.")
            if not full.startswith(prompt):
                raise ChatFormatError(
                    f"The {self.name} chat template renders the prompt differently when an answer follows it "
                    f"(prompt ends {prompt[-40:]!r}, conversation continues {full[len(prompt) - 40:][:80]!r}). "
                    "Completion-only training would mask the wrong tokens. Use a template whose generation prompt is "
                    "the start of the rendered conversation.")
        rest = full[len(prompt):]
        at = rest.find(_ANSWER)
        if at < 0:
            raise ChatFormatError(f"The {self.name} chat template drops the assistant's answer from the conversation.")
        before, after = rest[:at], rest[at + len(_ANSWER):]
        # Cut after the end-of-turn marker: what follows it (a newline, an EOS text) is never generated.
        ends = [(after.find(s), s) for s in self.family.stop if s in after]
        if ends:
            i, s = min(ends)
            after = after[:i + len(s)]
        else:
            raise ChatFormatError(
                f"The {self.name} chat template ends an answer with {after!r}, which holds none of the family's stop "
                f"strings {list(self.family.stop)}: the model would not learn to stop. Fix `stop` in kit/models/families.py.")
        return before, after

    # -- the same format written for other engines ------------------------------------------------------------
    @property
    def stop(self) -> list[str]:
        return list(self.family.stop)

    def jinja_template(self) -> str:
        """The tokenizer's `chat_template`: the model's own, written into the merged checkpoint and the GGUF."""
        return self.template

    def go_template(self) -> str:
        """Ollama's TEMPLATE (Go text/template over .System, .Prompt, .Response), derived from the Jinja template.

        The template is rendered with placeholders for the system text, the user text and the answer; the
        placeholders become Go actions. So the Go template cannot drift from the one the model was trained with,
        and tests render it with Go's own engine to prove it byte for byte.
        """
        def go(text: str) -> str:
            if "{{" in text:
                raise ChatFormatError(f"The {self.name} chat template writes '{{{{' as text; Go cannot render it.")
            return text.replace(_SYSTEM, "{{ .System }}").replace(_USER, "{{ .Prompt }}")

        with_system = go(self.prompt(_USER, _SYSTEM))
        without = go(self.prompt(_USER))
        head = without if with_system == without else "{{ if .System }}" + with_system + "{{ else }}" + without + "{{ end }}"
        return head + go(self._before_answer) + "{{ .Response }}" + go(self._after_answer)


def detect(template: str, model_type: str = "") -> Family:
    """The family whose markers the template writes (ties broken by the model type)."""
    hits = [f for f in FAMILIES.values() if f.markers and all(m in template for m in f.markers)]
    typed = [f for f in hits if model_type in f.model_types]
    if typed or hits:
        return (typed or hits)[0]
    raise FamilyError(
        f"No family in kit/models/families.py matches this chat template (model type '{model_type or '?'}'; it starts "
        f"{template[:80]!r}). Known families: {', '.join(FAMILIES)}. Add a Family entry for it (the strings its template "
        "writes, its end-of-turn stop strings, whether it has a system role), as the README's 'Another model family' "
        "section shows.")


def from_tokenizer(tokenizer, model_type: str = "", template: str | None = None) -> ChatFormat:
    """The chat format of a loaded tokenizer (its own `chat_template` unless `template` is given)."""
    template = template if template is not None else tokenizer.chat_template
    if isinstance(template, dict):  # a tokenizer with several named templates: the default one is the chat format
        template = template.get("default", "")
    if not template:
        raise ChatFormatError(
            "This model ships no chat template (a base model, or a GGUF without `tokenizer.chat_template`). kit never "
            "picks one silently: choose one with `python -m kit chat-template <model> --family chatml` (kit's "
            "documented default for base models) or `--from-file <template.jinja>`; it is saved beside the weights.")
    bos = tokenizer.bos_token or ""
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    adds_bos = bool(bos) and bool(ids) and ids[0] == tokenizer.bos_token_id
    return ChatFormat(detect(template, model_type), template, bos, tokenizer.eos_token or "", adds_bos)


# The embedded model's format (Gemma 3 270M; its GGUF carries no chat template), usable without a tokenizer.
GEMMA = ChatFormat(FAMILIES["gemma"], FAMILIES["gemma"].default_template, "<bos>", "<eos>", adds_bos=True)
