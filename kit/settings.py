"""One configuration surface: every field of a stage's config is set the same way from a notebook, a run YAML,
`kit run --set` and `kit train --set`.

Most fields are notebook parameters. The few a course never needs to show (thread counts, scheduler shapes, cost
inputs) are marked *advanced* on the dataclass field; each notebook that has some takes them through one parameter,
`advanced` (a dict by name), and `kit.runs` routes a flat `threads: 2` in a YAML there.
"""

from __future__ import annotations

import dataclasses

from kit.errors import KitError


def advanced(help: str) -> dict:
    """Field metadata marking an advanced setting: `threads: int = field(default=0, metadata=advanced("..."))`."""
    return {"advanced": True, "help": help}


def advanced_fields(config_cls) -> tuple[str, ...]:
    """Names of the fields of `config_cls` marked advanced, in declaration order."""
    return tuple(advanced_help(config_cls))


def advanced_help(config_cls) -> dict[str, tuple]:
    """{name: (default, help)} of the fields of `config_cls` marked advanced, in declaration order."""
    return {f.name: (f.default, f.metadata["help"])
            for f in dataclasses.fields(config_cls) if f.metadata.get("advanced")}


class SettingsError(KitError):
    """An `advanced` setting that the stage's config does not have."""


def closest(unknown, valid) -> list[str]:
    """Each unknown name quoted, with the closest valid one where there is one: "'thread' (did you mean 'threads'?)"."""
    import difflib

    return [f"'{u}' (did you mean '{c[0]}'?)" if (c := difflib.get_close_matches(u, list(valid), n=1)) else f"'{u}'"
            for u in unknown]


def checked(config_cls, advanced: dict | None) -> dict:
    """`advanced` (a notebook's dict of advanced settings), refused with the valid names if one is not an advanced
    field of `config_cls`; returned as keyword arguments for the config."""
    advanced = dict(advanced or {})
    valid = advanced_fields(config_cls)
    unknown = sorted(set(advanced) - set(valid))
    if unknown:
        raise SettingsError(f"advanced setting(s) {', '.join(closest(unknown, valid))} are not advanced fields of {config_cls.__name__}; "
                            f"those are: {', '.join(valid) or 'none'}. Notebook parameters are set by their own name.")
    return advanced


def flat(params: dict, where: str) -> dict:
    """`params` with a nested `advanced: {...}` mapping spread out: `advanced: {threads: 2}` and `threads: 2` are the
    same setting (a flat one wins). `where` names the source for the error."""
    params = dict(params)
    nested = params.pop("advanced", None) or {}
    if not isinstance(nested, dict):
        raise SettingsError(f"advanced in {where} is {nested!r}; give it as a mapping of setting names to values, or "
                            "write each setting by its own name (threads: 2).")
    return {**nested, **params}
