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
