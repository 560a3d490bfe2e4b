"""Snakemake and DVC run the same pipeline from the one params.yaml."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, SHARED

BIN = Path(sys.executable).parent


@pytest.fixture
def project(tmp_path):
    """A copy of the workflow files whose params.yaml points at the shared benchmark sets."""
    for name in ("workflow", "drn/schemas", "dvc.yaml", "params.yaml"):
        source = REPO / name
        copy = shutil.copytree if source.is_dir() else shutil.copy
        copy(source, tmp_path / name)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["paths"].update(benchmarks=str(SHARED), results="results")
    params["evaluation"]["datasets"] = ["Set5", "Set14"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path


def run(cwd, *command):
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def snakemake_commands(cwd):
    out = run(cwd, BIN / "snakemake", "--dry-run", "--printshellcmds", "--cores", "1")
    commands = re.findall(r"^Shell command: (drn .*)$", out, re.M)
    return sorted(c.split(" > ")[0] for c in commands)  # without the log redirection


def dvc_stages(cwd):
    run(cwd, BIN / "dvc", "init", "--no-scm", "--quiet")
    script = (
        "import json; from dvc.repo import Repo; print(json.dumps(sorted("
        "[s.cmd, [str(o.def_path) for o in s.outs]] for s in Repo('.').index.stages)))"
    )
    return json.loads(run(cwd, sys.executable, "-c", script).splitlines()[-1])


def test_the_dag_plans_every_dataset_and_scale(project):
    commands = snakemake_commands(project)
    assert len(commands) == 2 * 3
    assert all(c.startswith("drn evaluate --model bicubic") for c in commands)


def test_dvc_yaml_declares_the_snakemake_commands_and_outputs(project):
    stages = dvc_stages(project)
    assert [command for command, _ in stages] == snakemake_commands(project)
    for command, outs in stages:
        assert outs == [command.split("--json ")[1]]


def test_a_bad_setting_stops_the_run_before_any_job_naming_the_key(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["evaluation"]["scales"] = [2, "four"]
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    done = subprocess.run(
        [BIN / "snakemake", "--dry-run", "--cores", "1"],
        cwd=project,
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    message = done.stdout + done.stderr
    assert "'four' is not of type 'integer'" in message and "['scales']" in message
    assert "Shell command" not in message and not (project / "results").exists()


def test_snakemake_and_dvc_produce_the_same_json(project):
    run(project, BIN / "snakemake", "--cores", "2", "results/eval/bicubic/x4/Set5.json")
    by_snakemake = json.loads((project / "results/eval/bicubic/x4/Set5.json").read_text())
    (project / "results/eval/bicubic/x4/Set5.json").unlink()
    run(project, BIN / "dvc", "init", "--no-scm", "--quiet")
    run(project, BIN / "dvc", "repro", "evaluate_bicubic@Set5-4")
    assert json.loads((project / "results/eval/bicubic/x4/Set5.json").read_text()) == by_snakemake
    assert round(by_snakemake["psnr"], 2) == 28.43
    assert "didn't change" in run(project, BIN / "dvc", "repro", "evaluate_bicubic@Set5-4")
