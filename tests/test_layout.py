"""The package's shape: no import cycle between kit's modules, counting imports inside functions too."""

import ast
from pathlib import Path

KIT = Path(__file__).resolve().parents[1] / "kit"


def import_graph(root: Path = KIT) -> dict[str, set[str]]:
    """{module: kit modules it imports anywhere in its file}, e.g. {"kit.privacy.probes": {"kit.scoring", ...}}."""
    modules = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in modules.items():
        edges = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets = [base, *(f"{base}.{a.name}" for a in node.names)]
            else:
                continue
            edges |= {t for t in targets if t in modules and t not in (name, "kit")}
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected group of modules (depth-first search)."""
    found, state = [], {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_the_cycle_finder_finds_a_cycle_hidden_in_a_function(tmp_path):
    pkg = tmp_path / "kit"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from kit import b\n")
    (pkg / "b.py").write_text("def f():\n    from kit.a import g\n")
    (pkg / "c.py").write_text("from . import a\n")
    assert cycles(import_graph(pkg)) == [["kit.a", "kit.b", "kit.a"]]


def test_kit_has_no_import_cycle():
    graph = import_graph()
    seen = {"kit.stages.evaluate", "kit.scoring", "kit.privacy.probes", "kit.stages.export", "kit.models.chat"}
    assert seen <= set(graph)  # the walk saw the packages
    assert cycles(graph) == [], "modules that import each other (move what both need into a third module)"


# DESIGN.md, Layout: the six packages and, at the top, the modules every stage shares. The supporting modules below
# serve several packages and belong to none: the adapter registry (export, monitor, `kit registry`), the machine's
# capabilities (train, evaluate, export, llama.cpp), progress bars, how much to train (train, bench), the one
# configuration surface (every stage config, `kit run`), statistics (metrics, plots, monitoring).
PACKAGES = {"stages", "tasks", "models", "privacy", "scoring", "report"}
TOP_MODULES = {"__init__", "__main__", "errors", "io", "rundir", "runs"} | {
    "adapters", "hardware", "progress", "recipe", "settings", "stats"}


def test_kit_top_level_holds_only_the_packages_and_shared_modules_of_the_layout():
    packages = {p.name for p in KIT.iterdir() if (p / "__init__.py").exists()}
    modules = {p.stem for p in KIT.glob("*.py")}
    assert packages == PACKAGES, "a package outside DESIGN's layout (or one missing): update DESIGN.md and this test"
    assert modules == TOP_MODULES, "a module at kit/'s top level: move it into the package whose job it does"


def test_each_stage_module_has_a_run():
    import importlib

    for name in ("scope", "licenses", "prepare", "train", "evaluate", "export", "monitor"):
        assert callable(importlib.import_module(f"kit.stages.{name}").run), name
