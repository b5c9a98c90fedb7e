"""Reading an Ollama Modelfile back: what kit's export wrote, for the checks, the registry and the tests."""

from __future__ import annotations


def parse_modelfile(text: str) -> dict:
    """The instructions of a Modelfile as {name: value or [values]} (triple-quoted values may span lines)."""
    out: dict = {}
    i, lines = 0, text.splitlines()
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        if value.startswith('"""'):
            value = value[3:]
            while not value.endswith('"""'):
                value += "\n" + lines[i]
                i += 1
            value = value[:-3]
        key = key.upper()
        if key == "PARAMETER":
            name, _, v = value.partition(" ")
            out.setdefault("PARAMETER", {}).setdefault(name, []).append(v.strip().strip('"'))
        else:
            out[key] = value
    return out
