"""The workflow: the paper's DAG, the same pipeline in DVC, the demo end to end with Snakemake,
with DVC (cached reruns) and on a real Slurm cluster."""

from __future__ import annotations

import json
import os
import re
import sys

import pytest
import yaml
from conftest import REPO
from pipeline import BIN, project, run, small_demo
from slurm_cluster import SlurmCluster, missing

pytestmark = pytest.mark.slow  # Snakemake and DVC runs

PAPER_JOBS = {
    "fetch": 10, "evaluate_bicubic": 15, "prepare": 3, "train": 6,
    "train_distillation_ablation": 2, "train_loss_ablation": 2, "evaluate": 30,
    "evaluate_ensemble": 30, "evaluate_distillation_ablation": 2, "evaluate_loss_ablation": 2,
    "summary": 1, "report": 1, "all": 1,
}  # fmt: skip


def dry_run(cwd):
    """{rule: job count} and [(shell command, outputs)] of a Snakemake dry run."""
    out = run(cwd, BIN / "snakemake", "--dry-run", "--printshellcmds", "--cores", "1")
    stats = re.search(r"Job stats:\n.*?\n-+ +-+\n(.*?)\ntotal", out, re.S).group(1)
    counts = {line.split()[0]: int(line.split()[1]) for line in stats.splitlines()}
    jobs, outputs = [], None
    for line in out.splitlines():
        if line.startswith("    output: "):
            outputs = sorted(line.removeprefix("    output: ").split(", "))
        elif line.startswith(("Shell command: drn ", "Shell command: exec drn ")):
            command = line.removeprefix("Shell command: ").removeprefix("exec ")
            command = command.split(" > ")[0]  # no log redirection
            jobs.append((command, outputs))
    return counts, sorted(jobs)


def dvc_stages(cwd):
    run(cwd, BIN / "dvc", "init", "--no-scm", "--quiet")
    script = (
        "import json; from dvc.repo import Repo; print(json.dumps(sorted("
        "[' '.join(s.cmd.split()), sorted(str(o.def_path) for o in s.outs)]"
        " for s in Repo('.').index.stages)))"
    )
    return [
        tuple(stage)
        for stage in json.loads(run(cwd, sys.executable, "-c", script).splitlines()[-1])
    ]


def test_the_paper_dag_plans_every_expected_job(tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    counts, _ = dry_run(project(tmp_path, params))
    assert counts == PAPER_JOBS


@pytest.mark.parametrize("config", ["params.yaml", "demo/params.yaml"])
def test_dvc_yaml_declares_the_snakemake_stages_commands_and_outputs(tmp_path, config):
    params = yaml.safe_load((REPO / config).read_text())
    workspace = project(tmp_path, params)
    _, jobs = dry_run(workspace)
    assert dvc_stages(workspace) == [(command, outputs) for command, outputs in jobs]


def test_the_workflow_is_lint_clean():
    assert "Congratulations" in run(REPO, BIN / "snakemake", "--lint", "--directory", "demo")


def test_a_bad_setting_stops_the_run_before_any_job_naming_the_key(tmp_path):
    params = small_demo()
    params["evaluation"]["scales"] = [2, "four"]
    out = run(project(tmp_path, params), BIN / "snakemake", "-n", "--cores", "1", check=False)
    assert "evaluation.scales.1: 'four' is not of type 'integer'" in out
    assert "Shell command" not in out and not (tmp_path / "results").exists()


def test_an_unknown_source_in_a_setting_is_named(tmp_path):
    params = small_demo()
    params["evaluation"]["datasets"] = ["photos", "Set6"]
    out = run(project(tmp_path, params), BIN / "snakemake", "-n", "--cores", "1", check=False)
    assert "evaluation.datasets: unknown source 'Set6'" in out


def test_the_demo_dag_end_to_end_with_snakemake(demo_workspace):
    workspace = demo_workspace
    rows = json.loads((workspace / "results/summary.json").read_text())
    labels = {(r["label"], r["scale"]) for r in rows}
    assert labels == {
        ("bicubic", 2), ("bicubic", 3), ("drn", 2), ("drn", 3), ("drn_plus", 2), ("drn_plus", 3),
        ("drn-ensemble", 2), ("drn-ensemble", 3), ("table2-drn", 2), ("table2-drn_no_rd", 2),
        ("loss-l1", 2), ("loss-l2", 2),
    }  # fmt: skip
    assert all(r["images"] == 2 and r["dataset"] == "photos" for r in rows)
    curve = (workspace / "runs/drn_x3/val_curve.csv").read_text().splitlines()
    assert curve[0] == "step,psnr,ssim" and len(curve) == 3  # validated at steps 3 and 6
    assert (workspace / "reports/report.html").is_file() and (
        workspace / "reports/report.md"
    ).is_file()

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{workspace}/mlflow.db")
    experiment = client.get_experiment_by_name("drn-repro-demo")
    runs = client.search_runs([experiment.experiment_id])
    names = ["drn_x2", "drn_x3", "drn_plus_x2", "drn_plus_x3", "drn_x2", "drn_no_rd_x2"]
    assert sorted(r.info.run_name for r in runs) == sorted([*names, "l1_x2", "l2_x2"])
    assert all(r.info.status == "FINISHED" for r in runs)

    # nothing left to do; a change of one scale's setting replans only that scale's jobs
    assert "Nothing to be done" in run(workspace, BIN / "snakemake", "-n", "--cores", "1")
    original = (workspace / "params.yaml").read_text()
    params = yaml.safe_load(original)
    params["train"]["init_from"]["x3"] = "runs/drn_x2/model.pt"
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        counts, _ = dry_run(workspace)
    finally:
        (workspace / "params.yaml").write_text(original)
    assert counts == {
        "train": 2, "evaluate": 2, "evaluate_ensemble": 1, "summary": 1, "report": 1, "all": 1,
    }  # fmt: skip


def ran_stages(output):
    return sorted(re.findall(r"Running stage '([^']+)'", output))


def test_the_demo_dag_with_dvc_repro_cached_reruns_and_a_partial_rerun(tmp_path):
    workspace = project(tmp_path, small_demo())
    run(workspace, BIN / "dvc", "init", "--no-scm", "--quiet")
    first = run(workspace, BIN / "dvc", "repro")
    assert len(ran_stages(first)) == 28  # every stage: the 29 Snakemake jobs but `all`
    rows = json.loads((workspace / "results/summary.json").read_text())
    assert len(rows) == 12
    lock = yaml.safe_load((workspace / "dvc.lock").read_text())["stages"]
    photos_md5 = next(o["md5"] for o in lock["fetch@photos"]["outs"])
    assert f"`{photos_md5}`" in (workspace / "reports/report.md").read_text()  # data provenance
    assert ran_stages(run(workspace, BIN / "dvc", "repro")) == []  # a second repro is a no-op

    params = small_demo()
    params["train"]["init_from"]["x3"] = "runs/drn_x2/model.pt"
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert ran_stages(run(workspace, BIN / "dvc", "repro")) == [
        "evaluate@drn-3-photos", "evaluate@drn_plus-3-photos", "evaluate_ensemble@drn-3-photos",
        "report", "summary", "train@drn-3", "train@drn_plus-3",
    ]  # fmt: skip
    replaced = [p.name for p in (workspace / "runs").iterdir() if ".replaced-" in p.name]
    assert sorted(r.split(".")[0] for r in replaced) == ["drn_plus_x3", "drn_x3"]  # set aside


def test_dvc_exp_run_with_a_changed_setting(tmp_path):
    params = small_demo()
    params["evaluation"].update(scales=[2], models=["drn"], ensemble_models=[])
    params["downscaled"] = {"train_photos_x2": {"of": "train_photos", "scale": 2}}
    params["train"]["init_from"] = {"x2": None}
    workspace = project(tmp_path, params)
    run(workspace, "git", "init", "--quiet")
    run(workspace, BIN / "dvc", "init", "--quiet")
    run(workspace, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "init",
        "--allow-empty")  # fmt: skip
    run(workspace, "git", "add", "-A")
    run(workspace, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "pipeline")
    out = run(workspace, BIN / "dvc", "exp", "run", "-S", "train.optimizer.lr=0.001")
    assert "Ran experiment" in out
    settings = json.loads((workspace / "runs/drn_x2/settings.json").read_text())
    assert settings["learning_rate"] == 0.001


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    reason = missing()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the Slurm test: {reason}")
        pytest.skip(reason)
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def test_the_demo_dag_with_the_slurm_profile_on_a_real_cluster(tmp_path, slurm):
    params = small_demo()
    params["evaluation"].update(scales=[2])
    params["downscaled"] = {"train_photos_x2": {"of": "train_photos", "scale": 2}}
    params["train"]["init_from"] = {"x2": None}
    workspace = project(tmp_path, params)
    out = run(
        workspace, BIN / "snakemake", "--profile", "workflow/profiles/slurm",
        "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "1",
        "--seconds-between-status-checks", "2", "--latency-wait", "10",
        env=slurm,
    )  # fmt: skip
    assert "100%) done" in out
    submitted = re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+)", out)
    assert len(submitted) == 20  # every job but `all` ran as a Slurm job
    rows = json.loads((workspace / "results/summary.json").read_text())
    assert len(rows) == 8
    for job in submitted:  # Slurm ran them (it remembers finished jobs for MinJobAge)
        state = run(workspace, "scontrol", "show", "job", job, env=slurm)
        assert "JobState=COMPLETED" in state
