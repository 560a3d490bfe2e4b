"""Milestones: a run's checkpoint at step N is an N-step run of the same settings, and a run
trained in segments ends as one trained at once (drn/engine/train.py ``until`` and ``keep``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_train import settings, tiny_overrides

from drn.core.errors import UsageError
from drn.engine.checkpoint import load_checkpoint
from drn.engine.train import train


@pytest.fixture
def deterministic(data, tmp_path):
    """Settings of a tiny deterministic run of `iterations` steps, on pinned CPU threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield lambda iterations: settings(
        tiny_overrides(data, tmp_path, iterations, ["train.deterministic=true"])
    )
    torch.set_num_threads(threads)


def weights(path):
    return load_checkpoint(path)["state_dict"]


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_runs_checkpoint_at_a_milestone_has_the_weights_of_a_run_that_long(
    deterministic, tmp_path
):
    assert train(deterministic(20), tmp_path / "long", "cpu", report=False, track=False,
                 keep=(8,)) == 0  # fmt: skip
    assert train(deterministic(8), tmp_path / "short", "cpu", report=False, track=False) == 0
    kept = load_checkpoint(tmp_path / "long/checkpoints/step_8.pt")
    assert kept["milestone"] == {"step": 8, "run": "long"}
    assert same(kept["state_dict"], weights(tmp_path / "short/model.pt"))  # bit for bit
    assert not same(kept["state_dict"], weights(tmp_path / "long/model.pt"))


def test_a_run_trained_in_segments_ends_with_the_weights_of_one_trained_at_once(
    deterministic, tmp_path
):
    run = tmp_path / "segments"
    assert train(deterministic(20), run, "cpu", report=False, track=False, until=8) == 0
    assert not (run / "model.pt").exists() and (run / "checkpoints/step_8.pt").is_file()
    progress = json.loads((run / "progress.json").read_text())
    assert (progress["state"], progress["step"], progress["checkpoint_step"]) == (
        "segment_done", 8, 8,
    )  # fmt: skip
    assert train(deterministic(20), run, "cpu", report=False, track=False, until=8) == 0  # done
    assert train(deterministic(20), run, "cpu", report=False, track=False) == 0
    assert train(deterministic(20), tmp_path / "whole", "cpu", report=False, track=False) == 0
    assert same(weights(run / "model.pt"), weights(tmp_path / "whole/model.pt"))
    log = (run / "train.log").read_text()
    assert log.count("started") == 2 and "resumed from step 8 (of 20)" in log
    assert "segment done at step 8 of 20" in log
    assert json.loads((run / "progress.json").read_text())["state"] == "finished"


def test_a_finished_run_is_not_trained_again_and_a_passed_milestone_cannot_be_served(
    deterministic, tmp_path, capsys
):
    run = tmp_path / "run"
    assert train(deterministic(10), run, "cpu", report=False, track=False) == 0
    before = (run / "model.pt").stat().st_mtime_ns
    assert train(deterministic(10), run, "cpu", report=False, track=False) == 0
    assert "already finished (10 iterations" in capsys.readouterr().out
    assert (run / "model.pt").stat().st_mtime_ns == before
    assert (run / "train.log").read_text().count("started") == 1
    assert train(deterministic(20), tmp_path / "on", "cpu", report=False, track=False,
                 until=10) == 0  # fmt: skip
    with pytest.raises(UsageError, match=r"past step 5 without its checkpoint step_5\.pt"):
        train(deterministic(20), tmp_path / "on", "cpu", report=False, track=False, until=5)


def test_between_segments_the_mlflow_run_is_scheduled_then_one_run_to_the_end(
    deterministic, tmp_path
):
    from mlflow.tracking import MlflowClient

    run, uri = tmp_path / "tracked", f"sqlite:///{tmp_path}/mlflow.db"
    assert train(deterministic(12), run, "cpu", report=False, until=6, keep=(6,)) == 0
    client = MlflowClient(uri)
    (found,) = client.search_runs(client.get_experiment_by_name("drn-repro").experiment_id)
    assert found.info.status == "SCHEDULED" and found.info.run_name == "tracked"
    assert found.data.tags["segment"] == "step 6 of 12: the next segment resumes"
    kept = load_checkpoint(run / "checkpoints/step_6.pt")
    assert kept["mlflow"]["run_id"] == found.info.run_id  # its evaluation is logged there
    assert train(deterministic(12), run, "cpu", report=False, keep=(6,)) == 0
    (after,) = client.search_runs(found.info.experiment_id)
    assert after.info.run_id == found.info.run_id and after.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(found.info.run_id, "loss")]
    assert steps == sorted(steps) and steps[-1] == 12


def test_with_stop_if_behind_a_run_behind_at_a_passed_milestone_stops_in_one_line(
    tmp_path, monkeypatch, capsys
):
    from pipeline import project, small_demo

    from drn.cli import main
    from drn.pipeline.plan import build_plan

    params = small_demo()
    params["train"]["stop_if_behind"] = True
    project(tmp_path, params, dvc=False)
    monkeypatch.chdir(tmp_path)
    plan = build_plan(params)
    (evaluation,) = plan.milestone_evaluations("drn_plus_x2", 3)
    record = {"step": 3, "verdict": "behind", "line": "milestone drn_plus_x2 @ step 3: behind"}
    Path(evaluation.path).parent.mkdir(parents=True)
    Path(evaluation.path).write_text(json.dumps({"psnr": 20.0, "milestone": record}))
    progress = Path("runs/drn_plus_x2/progress.json")
    progress.parent.mkdir(parents=True)
    progress.write_text(json.dumps({"checkpoint_step": 2}))  # not yet at the milestone: trains
    from drn.commands.train import stop_if_behind

    stop_if_behind(plan, "drn_plus_x2", "runs/drn_plus_x2")
    progress.write_text(json.dumps({"checkpoint_step": 3}))  # past it: stops before training
    assert main(["train", "--run", "drn_plus_x2"]) == 3
    error = capsys.readouterr().err.strip()
    assert error.startswith("drn: error: drn_plus_x2: behind at its milestone step 3 (photos x2: ")
    assert "stopped (train.stop_if_behind)" in error and len(error.splitlines()) == 1
    record["verdict"] = "on course"
    Path(evaluation.path).write_text(json.dumps({"psnr": 31.0, "milestone": record}))
    stop_if_behind(plan, "drn_plus_x2", "runs/drn_plus_x2")  # on course: goes on


def test_a_kept_checkpoint_or_model_snakemake_deleted_is_written_again_not_trained(
    deterministic, tmp_path, capsys
):
    run = tmp_path / "run"
    assert train(deterministic(12), run, "cpu", report=False, track=False, until=6) == 0
    kept = weights(run / "checkpoints/step_6.pt")
    (run / "checkpoints/step_6.pt").unlink()  # a failed job's outputs, or --force before a job
    assert train(deterministic(12), run, "cpu", report=False, track=False, until=6) == 0
    out = capsys.readouterr().out
    assert f"wrote {run}/checkpoints/step_6.pt again, from last.pt at step 6" in out
    assert same(weights(run / "checkpoints/step_6.pt"), kept)
    assert train(deterministic(12), run, "cpu", report=False, track=False) == 0
    final, log = weights(run / "model.pt"), (run / "train.log").read_text()
    capsys.readouterr()
    (run / "model.pt").unlink()
    assert train(deterministic(12), run, "cpu", report=False, track=False) == 0
    assert same(weights(run / "model.pt"), final)
    assert f"wrote {run}/model.pt again, from last.pt at step 12" in capsys.readouterr().out
    assert (run / "train.log").read_text() == log  # no session started: no step trained
