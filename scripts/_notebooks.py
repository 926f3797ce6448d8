"""Shared by the ``build_notebook_0N.py`` scripts: cells -> an executed, committed notebook."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient


def build(cells) -> nbformat.NotebookNode:
    """A notebook of ``cells``: (kind, text) or (kind, text, tags) with kind "md" or "code"."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    for kind, text, *rest in cells:
        cell = nbformat.v4.new_markdown_cell(text) if kind == "md" else nbformat.v4.new_code_cell(text)
        tags = rest[0] if rest else ()
        if tags:
            cell.metadata["tags"] = list(tags)
        nb.cells.append(cell)
    return nb


def execute(cells, target: Path) -> int:
    """Build, execute (in the notebook's own folder) and write ``target``; the exit code."""
    nb = build(cells)
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(target.parent)}})
    client.execute()
    nbformat.write(nb, target)
    print(f"wrote {target}")
    return 0
