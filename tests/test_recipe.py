"""docs/ARCHITECTURE.md's "How to add an ablation", done once: the entry of the recipe, added to a
workspace's params.yaml and nothing else, appears in the plan, the Snakemake DAG, dvc.yaml, the
trained runs and their evaluations, and the report."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from conftest import REPO
from pipeline import BIN, one_seed_photos_only, project, run, small_demo

pytestmark = pytest.mark.slow  # trains two tiny runs with Snakemake


def recipe_entry() -> tuple[str, dict]:
    """The (name, settings) of the ablation the recipe adds."""
    text = (REPO / "docs/ARCHITECTURE.md").read_text()
    recipe = text.split("## How to add an ablation", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", recipe, re.S).group(1)
    ((name, entry),) = yaml.safe_load(block)["ablations"].items()
    return name, entry


def test_an_ablation_added_only_to_params_yaml_is_planned_run_and_reported(tmp_path):
    name, entry = recipe_entry()
    workspace = project(tmp_path, one_seed_photos_only(small_demo()))
    untouched = {p: p.read_bytes() for p in workspace.rglob("*") if p.is_file()}
    # 1. the entry, at the small demo's scale and data, shorter than its main runs
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["ablations"][name] = {**entry, "scale": 2, "epochs": 0.003, "dataset": "photos"}
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # 2. dvc.yaml generated again
    (workspace / "dvc.yaml").write_text(run(workspace, BIN / "drn", "plan", "--dvc"))

    runs = [f"{model}_x2_e0.003" for model in entry["models"]]
    labels = [f"{name}-{model}" for model in entry["models"]]
    plan = json.loads(run(workspace, BIN / "drn", "plan", "--json"))  # 3. drn plan shows them
    planned = {r["name"]: r["roles"] for r in plan["runs"]}
    assert all(planned[r] == ["ablation"] for r in runs)
    evaluations = {(e["label"], e["run"]) for e in plan["evaluations"]}
    assert set(zip(labels, runs, strict=True)) <= evaluations

    dry = run(workspace, BIN / "snakemake", "--dry-run", "--printshellcmds", "--cores", "1")
    stages = yaml.safe_load((workspace / "dvc.yaml").read_text())["stages"]
    served = {r["name"]: r for r in plan["runs"] if not r["trained"]}
    for run_name, label in zip(runs, labels, strict=True):
        if run_name in served:  # the first steps of a main run: its checkpoint there
            of, step = served[run_name]["served_by"], served[run_name]["iterations"]
            assert f"drn train --run {of} --until {step} " in dry
            assert f"train-{of}-step{step}" in stages
        else:
            assert f"drn train --run {run_name} " in dry and f"train-{run_name}" in stages
        assert f"results/eval/{label}/x2/photos.json" in dry
    evaluations = {*stages["evaluate"]["foreach"], *stages["evaluate_milestone"]["foreach"]}
    assert {f"{label}-x2-photos" for label in labels} <= evaluations

    # 4. trained and evaluated by the workflow, then reported
    targets = [f"results/eval/{label}/x2/photos.json" for label in labels]
    run(workspace, BIN / "snakemake", "--cores", "2", *targets)
    run(workspace, BIN / "drn", "report")
    report = (workspace / "reports/report.md").read_text()
    section = report.split(f"## {entry['title']}\n", 1)[1].split("\n## ", 1)[0]
    for label, run_name, model in zip(labels, runs, entry["models"], strict=True):
        result = json.loads((workspace / f"results/eval/{label}/x2/photos.json").read_text())
        row = next(line for line in section.splitlines() if line.startswith(f"| {model} |"))
        assert f"| {run_name} |" in row
        assert f"{result['psnr']:.2f}" in row and f"{result['ssim']:.4f}" in row

    changed = {p for p, data in untouched.items() if p.read_bytes() != data}
    assert changed == {workspace / "params.yaml", workspace / "dvc.yaml"}
