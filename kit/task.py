"""The task as every stage sees it: labels, the instruction, and how one record becomes a prompt and a completion.

In: `data/task.json` (written by the prepare stage) and a chat format. Out: prompt and completion strings. Training,
evaluation and the export parity check all build prompts here, so they cannot drift apart. Over-long tickets are
cut by tokens (the end of the ticket goes, never the instruction or the answer), the same way everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kit.chat import ChatFormat
from kit.io import read_json


@dataclass(frozen=True)
class Task:
    labels: tuple[str, ...]
    system: str

    @classmethod
    def load(cls, run_dir: str | Path) -> "Task":
        t = read_json(Path(run_dir) / "data" / "task.json")
        return cls(tuple(t["labels"]), t["system"])

    def prompt(self, fmt: ChatFormat, text: str, tokenizer=None, max_prompt_tokens: int = 0) -> str:
        """The prompt for one ticket; with a tokenizer and a budget, the ticket is cut to fit."""
        if tokenizer is not None and max_prompt_tokens:
            overhead = len(tokenizer(fmt.prompt("", self.system), add_special_tokens=True)["input_ids"])
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            room = max(max_prompt_tokens - overhead, 8)
            if len(ids) > room:
                text = tokenizer.decode(ids[:room])
        return fmt.prompt(text, self.system)

    def completion(self, fmt: ChatFormat, label: str) -> str:
        return fmt.completion(label)
