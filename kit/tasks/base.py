"""The task as every stage sees it: its kind, labels or schema, the instruction, and how a record becomes a prompt
and a completion.

In: `data/task.json` (written by the prepare stage) and a chat format. Out: prompt and completion strings. Training,
evaluation and the export parity check all build prompts here, so they cannot drift apart. Over-long tickets are
cut by tokens (the end of the ticket goes, never the instruction or the answer), the same way everywhere.

Kinds (DESIGN.md, Tasks): `classify` (text → one label; rows carry `label`), `extract` (text → a JSON object; rows
carry `answer`, the object serialized by `canonical_json`) and `reply` (text → free text; rows carry `answer`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from kit.io import read_json
from kit.models.chat import ChatFormat
from kit.rundir import RunDir

KINDS = ("classify", "extract", "reply")
# Generic on purpose: the instruction is the user's (`instruction`); the braces are filled in from the data.
DEFAULT_INSTRUCTIONS = {
    "classify": "Assign the text to exactly one of these labels: {labels}. Answer with the label only.",
    "extract": "Extract the information in the text as a JSON object with the keys {keys}. Answer with the JSON "
               "object only.",
    "reply": "Write the reply to this message.",
}
# With many labels the list would crowd the text out of the prompt (77 intent names are ~400 tokens, twice the
# default max_length), so past this many characters the default instruction gives their number, not their names:
# the tuned model learns them from its training rows, and every scorer only ever picks among them.
LABEL_LIST_CHARS = 300
MANY_LABELS_INSTRUCTION = "Assign the text to exactly one of {n} labels. Answer with the label only."


def default_instruction(kind: str, labels=(), keys=()) -> str:
    """The generic instruction of a task kind, with its labels or keys filled in (see LABEL_LIST_CHARS)."""
    listed = ", ".join(labels)
    if kind == "classify" and len(listed) > LABEL_LIST_CHARS:
        return MANY_LABELS_INSTRUCTION.format(n=len(labels))
    return DEFAULT_INSTRUCTIONS[kind].format(labels=listed or "(taken from the data)",
                                             keys=", ".join(keys) or "(taken from the data)")


def canonical_json(obj, schema: dict | None = None) -> str:
    """One spelling per object: keys in the schema's property order (then sorted), no spaces, non-ASCII kept.

    The model is trained on this text and its answers are parsed and compared as objects, so a stable order only
    decides what the model learns to write first (the schema's order: the intent before its fields, for example).
    """
    return json.dumps(_ordered(obj, schema or {}), ensure_ascii=False, separators=(",", ":"))


def _ordered(obj, schema: dict):
    if isinstance(obj, dict):
        props = schema.get("properties", {}) if isinstance(schema, dict) else {}
        keys = [k for k in props if k in obj] + sorted(k for k in obj if k not in props)
        return {k: _ordered(obj[k], props.get(k, {})) for k in keys}
    if isinstance(obj, list):
        return [_ordered(v, schema.get("items", {}) if isinstance(schema, dict) else {}) for v in obj]
    return obj


def parse_object(text: str) -> dict | None:
    """The JSON object an answer holds (the first one, when a model keeps writing after it), else None."""
    text = (text or "").strip()
    if not text.startswith("{"):
        return None
    try:
        obj, _ = json.JSONDecoder().raw_decode(text)
    except json.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def flatten(obj, prefix: str = "") -> dict:
    """Leaf values of a JSON object by dotted path ({"fields": {"city": "Rome"}} → {"fields.city": "Rome"})."""
    out = {}
    for k, v in obj.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, path + "."))
        else:
            out[path] = v
    return out


LEGACY_MAX_LENGTH = 192  # the max_length of adapters trained before kit recorded its own in kit_adapter.json


def prompt_budget(adapter_meta: dict, max_length: int = LEGACY_MAX_LENGTH) -> int:
    """How many tokens a prompt may take for this adapter: the one rule every stage after training uses.

    Training cuts prompts at `max_length` minus the longest answer (`kit.stages.train.prompt_budget`) and stores the result in
    the adapter's kit_adapter.json as `prompt_tokens`; evaluation, export parity, the served-model check and
    monitoring cut at exactly that, so a long ticket reads the same everywhere. Adapters written before kit stored it
    fall back to `max_length - 8`, the cut kit used then.
    """
    return int(adapter_meta.get("prompt_tokens") or max_length - 8)


def answer_token_cap(answer_tokens: int) -> int:
    """How many tokens a generated answer may take when answers run to `answer_tokens`: a quarter more, plus 8. The
    one rule for validation during training, 04's generation and (through metrics.json) 05's parity and 06."""
    return int(answer_tokens * 1.25) + 8


@dataclass(frozen=True)
class Task:
    labels: tuple[str, ...]
    system: str
    kind: str = "classify"
    schema: dict = field(default_factory=dict)  # extract: the JSON Schema answers are checked against

    @classmethod
    def load(cls, run_dir: str | Path) -> "Task":
        rd = RunDir(run_dir)
        t = read_json(rd.need(rd.task_json, what="task description"))
        return cls(tuple(t.get("labels", ())), t["system"], t.get("kind", "classify"), t.get("schema") or {})

    def to_dict(self) -> dict:
        return {"kind": self.kind, "labels": list(self.labels), "system": self.system, "schema": self.schema or None}

    @property
    def generative(self) -> bool:
        """Answers are generated and parsed (extract, reply), not scored over a fixed label set (classify)."""
        return self.kind != "classify"

    @property
    def answer_start(self) -> str:
        """What every valid answer opens with ("{" for extract), so generation can stop an answer that does not."""
        return "{" if self.kind == "extract" else ""

    def answer(self, row: dict) -> str:
        """The answer text of a prepared row, as the model must write it."""
        return row["label"] if self.kind == "classify" else row["answer"]

    def prompt(self, fmt: ChatFormat, text: str, tokenizer=None, max_prompt_tokens: int = 0, system: str | None = None
               ) -> str:
        """The prompt for one ticket; with a tokenizer and a budget, the ticket is cut to fit."""
        system = self.system if system is None else system
        if tokenizer is not None and max_prompt_tokens:
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            room = max(max_prompt_tokens - self.prompt_overhead(fmt, tokenizer, system), 8)
            if len(ids) > room:
                text = tokenizer.decode(ids[:room])
        return fmt.prompt(text, system)

    def prompt_overhead(self, fmt: ChatFormat, tokenizer, system: str | None = None) -> int:
        """Tokens every prompt spends before any text: BOS, the turn markers and the instruction (`system`)."""
        system = self.system if system is None else system
        return len(tokenizer(fmt.prompt("", system), add_special_tokens=True)["input_ids"])

    def completion(self, fmt: ChatFormat, answer: str) -> str:
        return fmt.completion(answer)

    def schema_system(self) -> str:
        """The instruction with the schema appended: what the untuned base model is given (it has not learned the
        format), so the zero- and few-shot baselines are fair. The schema is written as the answer's shape
        (`schema_shape`), every key and type in a third of the tokens of the JSON Schema text."""
        if self.kind != "extract" or not self.schema:
            return self.system
        shape = json.dumps(schema_shape(self.schema), ensure_ascii=False, separators=(",", ":"))
        return f"{self.system}\nThe answer has this shape (keys that the text does not mention are left out): {shape}"


def schema_shape(schema: dict):
    """A JSON Schema as an example of its shape: {"intent": "string", "fields": {"city": "string"}}; enums as
    "a|b|c", arrays as [item shape]."""
    if not isinstance(schema, dict):
        return "any"
    if "enum" in schema:
        return "|".join(str(v) for v in schema["enum"])
    kind = schema.get("type", "object" if "properties" in schema else "any")
    if isinstance(kind, list):
        kind = "|".join(kind)
    if kind == "object" and "properties" in schema:
        return {k: schema_shape(v) for k, v in schema["properties"].items()}
    if kind == "array":
        return [schema_shape(schema.get("items", {}))]
    return kind


def parse_label(text: str, labels) -> str | None:
    """The label a generated answer names: exact, else the label it starts with; None when it names none."""
    t = text.strip().strip("`'\".").strip()
    if t in labels:
        return t
    starts = [lab for lab in labels if t.startswith(lab)]
    return max(starts, key=len) if starts else None
