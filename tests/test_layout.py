"""The package's shape: no import cycle between kit's modules, counting imports inside functions too."""

import ast
from pathlib import Path

KIT = Path(__file__).resolve().parents[1] / "kit"


def import_graph(root: Path = KIT) -> dict[str, set[str]]:
    """{module: kit modules it imports anywhere in its file}, e.g. {"kit.probes": {"kit.scoring", ...}}."""
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
    assert {"kit.evaluate", "kit.scoring", "kit.probes", "kit.export"} <= set(graph)  # the walk saw the package
    assert cycles(graph) == [], "modules that import each other (move what both need into a third module)"
