import re
import tomllib
from pathlib import Path

import yaml

import invoicekit

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"redis": "redis-py"}  # PyPI name -> conda-forge name where they differ


def _name(req: str) -> str:
    return re.split(r"[\[<>=!~ ;]", req, maxsplit=1)[0].strip().lower()


def _spec(req: str) -> str:
    return re.sub(r"\[.*?\]", "", req).replace(" ", "").lower()


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for items in project["optional-dependencies"].values():
        reqs += [r for r in items if not r.startswith("invoicekit")]
    expected = {CONDA_NAMES.get(_name(r), _name(r)): _spec(r).replace(_name(r), CONDA_NAMES.get(_name(r), _name(r)), 1)
                for r in reqs}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {_name(d): d.replace(" ", "").lower() for d in env["dependencies"] if isinstance(d, str)}
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))  # what conda-forge lacks
    conda.update({_name(d): d.replace(" ", "").lower() for d in pip if not d.startswith("-e")})
    conda.pop("python")
    conda.pop("pip")
    assert conda == expected


def test_public_facade_is_a_literal_all():
    for name in invoicekit.__all__:
        assert hasattr(invoicekit, name), name
    assert len(set(invoicekit.__all__)) == len(invoicekit.__all__)


# -- extras match imports ------------------------------------------------------------------
import ast  # noqa: E402
import functools  # noqa: E402
import importlib.metadata  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

PACKAGE = ROOT / "invoicekit"
#: where each runtime extra's capability lives (paths under invoicekit/); an optional import
#: elsewhere must be guarded (inside ``try: ... except ImportError``)
CAPABILITY = {
    "postgres": ("io/backends/postgres.py",),
    "redis": ("cache.py", "monitor.py"),
    "pdf": ("render/",),
    "dedupe": ("dedupe/",),
    "security": ("security/",),
}
#: what the notebooks extra installs that no notebook imports: the front end, the kernel, and
#: the widgets tqdm.auto draws progress bars with in Jupyter
NOTEBOOK_TOOLING = {"jupyterlab", "ipykernel", "ipywidgets"}
ROLE_EXTRAS = {"dev", "bench"}  # extras by role (tooling), not by capability


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _dists(reqs) -> set[str]:
    return {_norm(_name(r)) for r in reqs if not r.startswith("invoicekit")}


@functools.lru_cache(maxsize=None)
def _distributions() -> dict:
    return importlib.metadata.packages_distributions()


def _dist_of(module: str, *, strict: bool = True) -> str | None:
    """The distribution providing top-level ``module`` (None for the standard library)."""
    if module in sys.stdlib_module_names or module in ("invoicekit", "__future__"):
        return None
    found = _distributions().get(module)
    assert found or not strict, f"{module!r} is imported but no installed distribution provides it"
    return _norm(found[0]) if found else None


def _guarded(tree: ast.AST) -> set[int]:
    """Line numbers of imports inside ``try`` blocks that catch ImportError."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
                h.type is not None and "ImportError" in ast.unparse(h.type) for h in node.handlers):
            lines |= {n.lineno for stmt in node.body for n in ast.walk(stmt) if isinstance(n, (ast.Import,
                                                                                               ast.ImportFrom))}
    return lines


def _imports(tree: ast.AST):
    """(top-level module, line) of every absolute import, module level or inside functions."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((a.name.split(".")[0], node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0], node.lineno


def package_imports() -> list[tuple[str, str, bool]]:
    """(path under invoicekit/, distribution, guarded) of every third-party import of the package."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        guarded = _guarded(tree)
        for module, line in _imports(tree):
            dist = _dist_of(module)
            if dist is not None:
                found.append((path.relative_to(PACKAGE).as_posix(), dist, line in guarded))
    return found


def notebook_imports() -> set[str]:
    dists = set()
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] != "code":
                continue
            code = "\n".join(line for line in "".join(cell["source"]).splitlines()
                             if not line.lstrip().startswith(("%", "!")))
            dists |= {d for m, _ in _imports(ast.parse(code)) if (d := _dist_of(m)) is not None}
    return dists


def _in(path: str, places) -> bool:
    return any(path == p or (p.endswith("/") and path.startswith(p)) for p in places)


def test_every_import_is_declared():
    project = _project()
    core = _dists(project["dependencies"])
    extras = {name: _dists(reqs) for name, reqs in project["optional-dependencies"].items()
              if name not in ROLE_EXTRAS}
    declared = core.union(*extras.values())
    undeclared = sorted({(p, d) for p, d, _ in package_imports() if d not in declared})
    assert not undeclared, f"imported but in no dependency list of pyproject.toml: {undeclared}"


def test_each_capability_extra_lists_exactly_what_it_imports():
    project = _project()
    core = _dists(project["dependencies"])
    imports = package_imports()
    for extra, places in CAPABILITY.items():
        listed = _dists(project["optional-dependencies"][extra])
        imported = {d for p, d, _ in imports if _in(p, places) and d not in core}
        assert listed == imported, (f"extra {extra!r} lists {sorted(listed)} but its capability "
                                    f"({', '.join(places)}) imports {sorted(imported)}")


def test_optional_imports_stay_in_their_capability_or_are_guarded():
    core = _dists(_project()["dependencies"])
    owner = {d: extra for extra, reqs in _project()["optional-dependencies"].items() if extra in CAPABILITY
             for d in _dists(reqs)}
    stray = sorted({(p, d) for p, d, guarded in package_imports()
                    if d not in core and d in owner and not guarded and not _in(p, CAPABILITY[owner[d]])})
    assert not stray, f"optional packages imported outside their capability without an ImportError guard: {stray}"


def test_core_dependencies_are_all_imported():
    core = _dists(_project()["dependencies"])
    imported = {d for _, d, _ in package_imports()}
    assert core <= imported, f"core dependencies nothing imports: {sorted(core - imported)}"


def test_notebooks_extra_is_what_the_notebooks_need():
    project = _project()
    extras = project["optional-dependencies"]
    listed = _dists(extras["notebooks"])
    assert NOTEBOOK_TOOLING <= listed, "the notebooks extra must install JupyterLab and the kernel"
    core = _dists(project["dependencies"])
    # what the notebooks import, less core and the extras the notebooks extra pulls in itself
    pulled = set().union(*(_dists(extras[e]) for r in extras["notebooks"] if r.startswith("invoicekit[")
                           for e in r[len("invoicekit["):-1].split(",")))
    needed = notebook_imports() - core - pulled
    assert listed - NOTEBOOK_TOOLING == needed, (
        f"the notebooks extra lists {sorted(listed - NOTEBOOK_TOOLING)} besides its tooling; the notebooks "
        f"import {sorted(needed)}")


def test_missing_dependency_errors_name_the_extra_that_installs_it():
    extras = {name: _dists(reqs) for name, reqs in _project()["optional-dependencies"].items()}
    checked = 0
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "MissingDependencyError"):
                continue
            module, extra = (a.value if isinstance(a, ast.Constant) else None for a in node.args[:2])
            if extra is None:
                continue
            assert extra in extras, f"{path.name}: MissingDependencyError names no extra {extra!r}"
            if module is not None:
                dist = _norm(module) if _norm(module) in extras[extra] else _dist_of(module)
                assert dist in extras[extra], f"{path.name}: {module!r} is not installed by extra {extra!r}"
            checked += 1
    assert checked >= 6  # redis, pdf, postgres (2), dedupe, security (2): the guards are really read


def test_import_invoicekit_loads_no_optional_package():
    project = _project()
    core = _dists(project["dependencies"])
    optional = set().union(*(_dists(r) for n, r in project["optional-dependencies"].items()
                             if n not in ROLE_EXTRAS)) - core
    code = "import sys, invoicekit; print('\\n'.join(sorted({m.split('.')[0] for m in sys.modules})))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    by_dist = {m: d for m in loaded if (d := _dist_of(m, strict=False)) is not None}
    assert not {m for m, d in by_dist.items() if d in optional}, by_dist


def test_license_file_matches_pyproject():
    project = _project()
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n") and "Permission is hereby granted, free of charge" in text


def test_make_lab_installs_the_notebooks_extra_and_opens_the_notebooks():
    assert "jupyterlab" in _dists(_project()["optional-dependencies"]["notebooks"])
    r = subprocess.run(["make", "-n", "-B", "lab"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "pip install --quiet -e '.[notebooks]'" in r.stdout
    assert re.search(r"jupyter lab --notebook-dir=notebooks\b", r.stdout)
