"""The course's notebooks are written as text: notebooks/NN_stage.py in jupytext's percent format, one per notebook.

Those files are the source: diffable, linted (ruff, in the tests) and editable as notebooks in JupyterLab, where the
jupytext extension keeps each .py paired with its .ipynb. The .ipynb files, output-free, are what papermill and
`kit run` execute. This script writes them from the .py files with stable cell ids (`make notebooks`); a test checks
that every pair holds the same cells.

    python tools/sync_notebooks.py      write notebooks/*.ipynb from notebooks/*.py
"""

from pathlib import Path

import jupytext
import nbformat

NB_DIR = Path(__file__).resolve().parent.parent / "notebooks"
METADATA = {
    "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
    "language_info": {"name": "python"},
    "jupytext": {"formats": "ipynb,py:percent"},  # JupyterLab saves both files of the pair
}


def sources(nb_dir: Path = NB_DIR) -> list[Path]:
    return sorted(p for p in nb_dir.glob("[0-9][0-9]_*.py"))


def notebook(py: Path):
    """The output-free notebook of one percent-format source, cell ids numbered so diffs show only real changes."""
    nb = jupytext.read(py)
    for i, cell in enumerate(nb.cells):
        cell.id = f"{py.stem[:2]}-{i:02d}"
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cell.metadata = {k: v for k, v in cell.metadata.items() if k == "tags"}
    nb.metadata = METADATA
    return nb


def build(out_dir: Path = NB_DIR, nb_dir: Path = NB_DIR) -> list[Path]:
    written = []
    for py in sources(nb_dir):
        out = out_dir / f"{py.stem}.ipynb"
        nbformat.write(notebook(py), out)
        written.append(out)
    return written


if __name__ == "__main__":
    for path in build():
        print(path.relative_to(NB_DIR.parent))
