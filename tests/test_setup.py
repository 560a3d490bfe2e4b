"""The two setups agree: pip (pyproject.toml, Makefile, CI) and conda (environment.yml)."""

from __future__ import annotations

import re
import tomllib

import yaml
from conftest import REPO
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

CONDA_TO_PYPI = {"pytorch": "torch", "pytorch-gpu": "torch"}


def pyproject():
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def pip_requirements(lines):
    return {(r.name.lower(), r.specifier) for r in map(Requirement, lines)}


def conda_requirements(entries):
    result = set()
    for entry in entries:
        name, spec = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(.*)", entry).groups()
        if name in ("python", "pip"):
            continue
        result.add((CONDA_TO_PYPI.get(name, name).lower(), SpecifierSet(spec.replace(" ", ""))))
    return result


def test_environment_yml_has_the_dependencies_of_pyproject():
    project = pyproject()
    expected = pip_requirements(project["dependencies"])
    expected |= pip_requirements(project["optional-dependencies"]["pipeline"])
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    declared = conda_requirements(conda) | pip_requirements(p for p in pip if not p.startswith("-"))
    assert declared == expected
    assert "--editable ." in pip  # the package itself, from this checkout


def test_environment_yml_is_python_311_from_conda_forge():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    assert env["channels"][0] == "conda-forge"
    assert "python=3.11" in env["dependencies"]
    assert SpecifierSet(pyproject()["requires-python"]).contains("3.11")


def test_cpu_setup_pins_a_torch_build_without_cuda():
    makefile = (REPO / "Makefile").read_text()
    pinned = re.search(r"^TORCH \?= (torch==\S+)$", makefile, re.M).group(1)
    constraints = (REPO / "constraints/cpu.txt").read_text().splitlines()
    assert pinned in constraints
    assert "download.pytorch.org/whl/cpu" in makefile
    # a CUDA build of torch would drag these in
    assert not [c for c in constraints if c.startswith(("nvidia-", "triton", "cuda-"))]
    torch_req = next(Requirement(d) for d in pyproject()["dependencies"] if d.startswith("torch"))
    assert torch_req.specifier.contains(pinned.split("==")[1])


def test_ci_runs_the_readme_test_command():
    assert "make test" in (REPO / ".ci/run").read_text()
    assert "make test" in (REPO / "README.md").read_text()
