"""The notebooks, as committed: nbval (``make test``) runs them and compares their outputs;
this checks what nbval cannot: that they are the four issue 12 names and the central-scale
one of issue 13, each rebuilt by its own script, executed, checked by asserts, compared in
full (no output excluded), and leaving nothing behind in the temporary directory."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
NAMES = ["01_quick_start", "02_duplicates", "03_pdf_batch", "04_offline_device", "05_central_scale"]


def _code_cells(name: str) -> list[dict]:
    nb = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def _source(cell: dict) -> str:
    return "".join(cell["source"])


def _sanitisers() -> list[tuple[re.Pattern, str]]:
    """The (regex, replacement) pairs of nbval_sanitize.cfg, read as nbval reads them."""
    from nbval.plugin import get_sanitize_patterns

    return [(re.compile(r), s) for r, s in get_sanitize_patterns((NOTEBOOKS / "nbval_sanitize.cfg").read_text())]


def test_the_notebooks_each_with_its_builder():
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == NAMES
    for name in NAMES:
        builder = ROOT / "scripts" / f"build_notebook_{name[:2]}.py"
        assert f'"{name}.ipynb"' in builder.read_text(), builder


@pytest.mark.parametrize("name", NAMES)
def test_executed_checked_and_compared_in_full(name):
    cells = _code_cells(name)
    assert all(c["execution_count"] for c in cells), "every code cell is committed executed"
    assert not [o for c in cells for o in c["outputs"] if o["output_type"] == "error"]
    assert sum(bool(re.search(r"^\s*assert ", _source(c), re.M)) for c in cells) >= 5, "key results are asserted"
    ignored = [c for c in cells if "nbval-ignore-output" in c["metadata"].get("tags", ())
               or re.search(r"#\s*NBVAL_(IGNORE_OUTPUT|SKIP)", _source(c))]
    assert not ignored, "outputs that change between runs are sanitised, not excluded"


@pytest.mark.parametrize("name", NAMES)
def test_temporary_paths_are_sanitised_and_removed(name):
    cells = _code_cells(name)
    prefix = f'tempfile.mkdtemp(prefix="invoicekit-{name[:2]}-")'
    assert sum(prefix in _source(c) for c in cells) == 1, "one temporary folder, named for the sanitiser"
    last = _source(cells[-1])
    assert "shutil.rmtree(work)" in last and "assert not work.exists()" in last
    patterns = _sanitisers()
    for cell in cells:
        text = json.dumps(cell["outputs"])
        for pattern, replacement in patterns:
            text = pattern.sub(replacement, text)
        assert "/tmp/" not in text, f"an output names a temporary path nbval would not rewrite: {_source(cell)[:60]}"
