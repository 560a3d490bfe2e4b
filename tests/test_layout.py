"""The folder list is the architecture (docs/ARCHITECTURE.md, "The map"): each layer of drn/
imports only the layers below it, no module imports another in a circle (imports inside
functions count), no module nears 700 lines, the Snakemake files only declare, and the small
public API (`from drn import imresize, psnr, ssim, build_model`) loads lazily."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

PACKAGE = REPO / "drn"
# What each layer may import (besides itself and `drn` itself, for __version__). drn/__init__.py
# (the public API, imported on first use) and drn/__main__.py stand apart.
MAY_IMPORT = {
    "core": set(),
    "protocol": {"core"},
    "models": {"core"},
    "engine": {"core", "protocol", "models"},
    "pipeline": {"core", "protocol", "models", "engine"},
    "doctor": {"core", "protocol", "models", "engine", "pipeline"},
    "report": {"core", "protocol", "models", "engine", "pipeline"},
    "commands": {"core", "protocol", "models", "engine", "pipeline", "doctor", "report"},
    "cli": {"core", "commands"},
}
LAYERS = set(MAY_IMPORT)


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(name: str, path: Path) -> set[str]:
    """The drn modules ``name`` imports anywhere in its file (top level or inside functions):
    ``from drn.a import b`` counts as drn.a.b where that is a module, else as drn.a."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return {m for m in found if m == "drn" or m.startswith("drn.")} - {name}


GRAPH = {name: imported(name, path) for name, path in MODULES.items()}


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def test_every_module_is_in_a_layer():
    loose = [m for m in MODULES if layer(m) is None and m not in ("drn", "drn.__main__")]
    assert not loose, f"modules outside the layers: {loose}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if layer(m)))
def test_a_layer_imports_only_the_layers_below_it(module):
    own = layer(module)
    wrong = sorted(dep for dep in GRAPH[module] if layer(dep) not in {own, *MAY_IMPORT[own], None})
    assert not wrong, f"{module} ({own}) imports {wrong}; {own} may use {sorted(MAY_IMPORT[own])}"


def test_no_module_imports_another_in_a_circle():
    cycles, state = [], {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for dep in sorted(GRAPH.get(module, ())):
            if state.get(dep) == "open":
                cycles.append([*path[path.index(dep) :], dep])
            elif dep not in state:
                visit(dep, [*path, dep])
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import circles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_circle_finder_finds_a_circle(monkeypatch):
    """The check above can fail: config and the model registry importing each other is one."""
    monkeypatch.setitem(GRAPH, "drn.models.registry", {"drn.pipeline.params"})
    with pytest.raises(AssertionError, match=r"drn\.pipeline\.params -> drn\.models"):
        test_no_module_imports_another_in_a_circle()


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_nears_700_lines(module):
    lines = len(MODULES[module].read_text().splitlines())
    assert lines < 700, f"{MODULES[module].relative_to(REPO)}: {lines} lines"


def test_every_package_says_what_it_owns_and_may_import():
    for package in sorted(p for p in PACKAGE.iterdir() if (p / "__init__.py").exists()):
        if package.name not in LAYERS:
            continue
        doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text())) or ""
        assert "May import" in doc, f"{package.name}/__init__.py: no 'May import' in its docstring"


def test_the_snakemake_files_only_declare():
    files = [REPO / "workflow/Snakefile", *sorted((REPO / "workflow/rules").glob("*.smk"))]
    lines = sum(len(f.read_text().splitlines()) for f in files)
    assert lines <= 220, f"workflow/Snakefile and rules/*.smk: {lines} lines"
    for f in files:
        defined = [line for line in f.read_text().splitlines() if line.startswith("def ")]
        assert not defined, f"{f.relative_to(REPO)} defines functions: {defined}"


def python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_public_api_is_the_protocols_functions_and_the_model_registry():
    import drn
    from drn import build_model, imresize, psnr, ssim
    from drn.models import registry
    from drn.protocol import metrics, resize

    assert imresize is resize.imresize and callable(drn.imresize)
    assert psnr is metrics.psnr and ssim is metrics.ssim
    assert build_model is registry.build_model
    assert not (PACKAGE / "imresize.py").exists() and not (PACKAGE / "metrics.py").exists()
    assert {"imresize", "psnr", "ssim", "build_model"} <= set(dir(drn))
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        drn.nothing  # noqa: B018


def test_import_drn_loads_no_torch_and_the_metrics_none_either():
    code = (
        "import sys, drn; a = 'torch' in sys.modules; "
        "from drn import imresize, psnr, ssim; print(a, 'torch' in sys.modules)"
    )
    assert python(code) == "False False"


def test_the_supervisor_loads_only_the_standard_library():
    code = (
        "import sys; before = set(sys.modules); import drn.pipeline.job; "
        "new = {m.split('.')[0] for m in set(sys.modules) - before}; "
        "print(sorted(new - set(sys.stdlib_module_names) - {'drn'}))"
    )
    assert python(code) == "[]"
