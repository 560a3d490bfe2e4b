"""The experiment plan: every run and evaluation of params.yaml, defined once
(drn/pipeline/plan.py)."""

from __future__ import annotations

import copy
import dataclasses
import json
import subprocess
import sys
from dataclasses import replace

import pytest
import yaml
from conftest import REPO

from drn.cli import main
from drn.core.errors import UsageError
from drn.engine.settings import RESUMABLE_CHANGES, TrainSettings, is_prefix
from drn.pipeline.params import load_params, validate_params
from drn.pipeline.plan import build_plan, run_name
from drn.pipeline.settings import SETTING_KEYS, settings_from_params

PAPER = load_params(REPO / "params.yaml")
DEMO = load_params(REPO / "demo/params.yaml")


def test_the_paper_config_plans_every_model_at_every_scale_and_each_ablation_arm():
    plan = build_plan(PAPER)
    runs = {r.name: (r.variant, r.scale, r.epochs, r.loss, r.roles) for r in plan.runs}
    assert runs == {
        "drn_x2": ("drn", 2, 800, "l1", ("main",)),
        "drn_x3": ("drn", 3, 800, "l1", ("main",)),
        "drn_x4": ("drn", 4, 800, "l1", ("main",)),
        "drn_plus_x2": ("drn_plus", 2, 300, "l1", ("main",)),
        "drn_plus_x3": ("drn_plus", 3, 300, "l1", ("main",)),
        "drn_plus_x4": ("drn_plus", 4, 300, "l1", ("main",)),
        "edsr_baseline_x2": ("edsr_baseline", 2, 300, "l1", ("control",)),  # the control
        "edsr_baseline_x3": ("edsr_baseline", 3, 300, "l1", ("control",)),
        "edsr_baseline_x4": ("edsr_baseline", 4, 300, "l1", ("control",)),
        "drn_x3_e100": ("drn", 3, 100, "l1", ("ablation",)),  # Table 2, RDBs
        "drn_no_rd_x3_e100": ("drn_no_rd", 3, 100, "l1", ("ablation",)),  # Table 2, no RDBs
        "drn_plus_x3_e100": ("drn_plus", 3, 100, "l1", ("ablation",)),  # Table 2, DRN+
        "drn_x2_e100": ("drn", 2, 100, "l1", ("ablation",)),  # MAE
        "drn_x2_e100_l2": ("drn", 2, 100, "l2", ("ablation",)),  # MSE
    }  # fmt: skip
    trained = plan.trained_runs()
    assert len(trained) == 11 and all(r.directory == f"runs/{r.name}" for r in trained)
    assert all(r.seed == 0 for r in plan.runs)


def test_an_ablation_run_that_is_a_main_runs_first_epochs_is_its_checkpoint_there():
    plan = build_plan(PAPER, passed=None)
    served = {r.name: (r.served_by, r.iterations, r.model) for r in plan.served_runs()}
    assert served == {
        "drn_x2_e100": ("drn_x2", 100_000, "runs/drn_x2/checkpoints/step_100000.pt"),  # MAE
        "drn_x3_e100": ("drn_x3", 100_000, "runs/drn_x3/checkpoints/step_100000.pt"),  # Table 2
        "drn_plus_x3_e100": ("drn_plus_x3", 100_000,
                             "runs/drn_plus_x3/checkpoints/step_100000.pt"),
    }  # fmt: skip
    assert [r.name for r in plan.served_runs()] == [
        "drn_x2_e100",
        "drn_x3_e100",
        "drn_plus_x3_e100",
    ]  # main runs' order
    floor = plan.bicubic_of(plan.evaluation("distillation-drn", 3, "Set5"))  # a verdict's floor
    assert floor is not None and floor.path == "results/eval/bicubic/x3/Set5.json"
    assert plan.run("drn_x3").milestones == (100_000,)
    assert plan.run("drn_x3").segments == (100_000, 800_000)
    assert plan.run("drn_x4").segments == (800_000,)
    # not merged: another loss (MSE), another model (no RDBs)
    assert plan.run("drn_x2_e100_l2").trained and plan.run("drn_no_rd_x3_e100").trained
    # Table 2's three arms: two milestones and the no-RDB run
    arms = {e.arm: e.run for e in plan.group("distillation")}
    assert arms == {"drn": "drn_x3_e100", "drn_no_rd": "drn_no_rd_x3_e100",
                    "drn_plus": "drn_plus_x3_e100"}  # fmt: skip


def test_a_run_of_another_seed_or_schedule_is_not_a_milestone():
    plan = build_plan(DEMO, passed=None)  # drn seeds 0 and 1
    assert plan.run("drn_x2_e0.2").served_by == "drn_x2"
    assert plan.run("drn_x2_e0.2_s1").served_by == "drn_x2_s1"  # its own seed's main run
    assert plan.run("drn_x2_e0.2_l2").trained  # another loss
    params = copy.deepcopy(DEMO)
    params["ablations"]["distillation"]["scale"] = params["ablations"]["loss"]["scale"] = 3
    params["downscaled"]["train_photos_x3"] = {"of": "train_photos", "scale": 3}
    assert build_plan(params, passed=None).run("drn_x3_e0.2").trained  # no x3 main run

    short = settings_from_params(DEMO, "drn", 2, 0.2)
    long = settings_from_params(DEMO, "drn", 2)
    assert is_prefix(short, long) and not is_prefix(long, short)
    assert not is_prefix(replace(short, iterations=0), long)  # no step: nothing to keep
    assert not is_prefix(replace(short, decay_every=100), long)  # halves at another step
    assert not is_prefix(replace(short, seed=1), long)
    assert not is_prefix(replace(short, loss="l2"), long)
    assert not is_prefix(replace(short, init_from="runs/drn_x2/model.pt"), long)


def test_the_milestones_follow_the_ablations_and_leave_the_main_runs_settings_alone():
    params = copy.deepcopy(PAPER)
    params["ablations"]["distillation"]["epochs"] = 150
    plan = build_plan(params, passed=None)
    assert plan.run("drn_x3").milestones == (150_000,)
    assert plan.run("drn_x3").keys == build_plan(PAPER, passed=None).run("drn_x3").keys


def test_a_milestone_the_main_run_went_past_without_keeping_it_is_trained_apart(tmp_path):
    params = copy.deepcopy(PAPER)
    params["paths"]["runs"] = str(tmp_path)
    (tmp_path / "drn_x3").mkdir()
    (tmp_path / "drn_x3/progress.json").write_text('{"checkpoint_step": 120000}')
    plan = build_plan(params)
    assert plan.run("drn_x3_e100").trained and plan.run("drn_x3").milestones == ()
    assert not plan.run("drn_x2_e100").trained  # drn_x2 has not started: still a milestone
    (tmp_path / "drn_x3/checkpoints").mkdir()
    (tmp_path / "drn_x3/checkpoints/step_100000.pt").write_bytes(b"kept")
    assert build_plan(params).run("drn_x3_e100").served_by == "drn_x3"


def test_the_paper_config_evaluates_every_set_at_every_scale_and_each_ablation_arm():
    plan = build_plan(PAPER)
    by_label = {}
    for e in plan.evaluations:
        by_label.setdefault(e.label, []).append(e)
    assert {label: len(found) for label, found in by_label.items()} == {
        "bicubic": 15, "drn": 15, "drn-ensemble": 15, "drn_plus": 15, "drn_plus-ensemble": 15,
        "edsr_baseline": 15, "distillation-drn": 1, "distillation-drn_no_rd": 1,
        "distillation-drn_plus": 1, "loss-l1": 1,
        "loss-l2": 1,
    }  # fmt: skip
    assert all(e.self_ensemble == e.label.endswith("-ensemble") for e in plan.evaluations)
    assert plan.evaluation("distillation-drn_no_rd", 3, "Set5").run == "drn_no_rd_x3_e100"
    assert plan.evaluation("loss-l2", 2, "Set5").run == "drn_x2_e100_l2"
    assert plan.evaluation("drn_plus-ensemble", 4, "Manga109").run == "drn_plus_x4"
    assert plan.evaluation("bicubic", 3, "B100").run is None
    paths = [e.path for e in plan.evaluations]
    assert len(set(paths)) == len(paths) == 95
    assert plan.evaluation("loss-l1", 2, "Set5").path == "results/eval/loss-l1/x2/Set5.json"
    named = {r.name for r in plan.runs}
    assert {e.run for e in plan.evaluations} - {None} == named  # every run is evaluated


def one_seed(params: dict) -> dict:
    return {**params, "train": {**params["train"], "seeds": [0]}}


def test_runs_of_identical_settings_are_trained_once_and_shared():
    plan = build_plan(one_seed(DEMO))  # the demo's distillation drn and MAE runs are alike
    assert [r.name for r in plan.runs] == [
        "drn_x2", "drn_plus_x2", "edsr_baseline_x2", "drn_x2_e0.2", "drn_no_rd_x2_e0.2",
        "drn_plus_x2_e0.2", "drn_x2_e0.2_l2",
    ]  # fmt: skip
    assert plan.evaluation("distillation-drn", 2, "photos").run == "drn_x2_e0.2"
    assert plan.evaluation("loss-l1", 2, "photos").run == "drn_x2_e0.2"

    params = copy.deepcopy(one_seed(DEMO))  # an ablation arm equal to a main run is that run
    params["ablations"]["loss"]["epochs"] = params["train"]["epochs"]["drn"]
    plan = build_plan(params)
    shared = plan.run("drn_x2")
    assert shared.roles == ("main", "ablation") and shared.role == "main"
    assert plan.evaluation("loss-l1", 2, "photos").run == "drn_x2"
    assert "ablations.loss.epochs" in shared.keys and "train.epochs.drn" in shared.keys


def test_every_run_is_trained_once_per_seed_and_each_seed_evaluated_apart():
    plan = build_plan(DEMO)  # train.seeds: {default: [0], drn: [0, 1]}
    seeds = {r.name: r.seed for r in plan.runs}
    assert {n: s for n, s in seeds.items() if n.startswith("drn_x2")} == {
        "drn_x2": 0, "drn_x2_s1": 1, "drn_x2_e0.2": 0, "drn_x2_e0.2_s1": 1, "drn_x2_e0.2_l2": 0,
        "drn_x2_e0.2_l2_s1": 1,
    }  # fmt: skip
    assert seeds["drn_plus_x2"] == 0 and "drn_plus_x2_s1" not in seeds
    second = plan.evaluation("loss-l1_s1", 2, "photos")
    assert (second.run, second.arm, second.seed, second.group) == (
        "drn_x2_e0.2_s1",
        "l1",
        1,
        "loss",
    )
    assert plan.evaluation("drn-ensemble_s1", 2, "photos").path == (
        "results/eval/drn-ensemble_s1/x2/photos.json"
    )
    params = copy.deepcopy(PAPER)
    params["train"]["seeds"] = [0, 1, 2]
    plan = build_plan(params)
    assert len(plan.runs) == 3 * len(build_plan(PAPER).runs)
    assert (
        build_plan(params).run("drn_plus_x4_s2").keys == build_plan(PAPER).run("drn_plus_x4").keys
    )


def test_a_control_is_trained_with_the_same_recipe_and_evaluated_everywhere():
    params = copy.deepcopy(PAPER)
    params["controls"] = ["drn_no_rd"]
    params["train"]["epochs"]["drn_no_rd"] = 300
    validate_params(params)
    plan = build_plan(params)
    controls = [r for r in plan.runs if r.role == "control"]
    assert [(r.name, r.epochs, r.loss) for r in controls] == [
        ("drn_no_rd_x2", 300, "l1"), ("drn_no_rd_x3", 300, "l1"), ("drn_no_rd_x4", 300, "l1"),
    ]  # fmt: skip
    calibration = plan.group("calibration")
    assert len(calibration) == 15 and {e.label for e in calibration} == {"drn_no_rd"}
    params["controls"] = ["drn"]
    with pytest.raises(UsageError, match=r"controls: drn is also one of evaluation\.models"):
        validate_params(params)


def test_a_run_is_named_by_what_differs_from_the_default_recipe():
    assert run_name(PAPER, "drn", 2) == "drn_x2"
    assert run_name(PAPER, "drn", 2, epochs=800, loss="l1") == "drn_x2"
    assert run_name(PAPER, "drn_plus", 4, epochs=12.5) == "drn_plus_x4_e12.5"
    assert run_name(PAPER, "drn", 3, loss="l2") == "drn_x3_l2"
    assert run_name(PAPER, "drn", 3, epochs=5, loss="l2", seed=4) == "drn_x3_e5_l2_s4"


def test_each_run_lists_exactly_the_settings_it_reads():
    plan = build_plan(PAPER)
    main_run, mse = plan.run("drn_x3"), plan.run("drn_x2_e100_l2")
    assert {"train.epochs.drn", "train.loss", "train.init_from.x3", "models.drn"} <= set(
        main_run.keys
    )
    assert not any(k.startswith("ablations.") or k.endswith(".x2") for k in main_run.keys)
    assert {"ablations.loss.epochs", "ablations.loss.losses", "ablations.loss.model"} <= set(
        mse.keys
    )
    assert "train.epochs.drn" not in mse.keys and "train.loss" not in mse.keys
    resumable = {"workers", "log_every", "checkpoint_every", "compile"}  # not results
    assert not any(key.removeprefix("train.") in resumable for key in mse.keys)


def test_every_setting_that_changes_a_result_says_where_it_comes_from():
    fields = {f.name for f in dataclasses.fields(TrainSettings)}
    assert set(SETTING_KEYS) == fields - RESUMABLE_CHANGES


def test_a_run_of_the_plan_resolves_to_its_settings():
    run = build_plan(PAPER).run("drn_x2_e100_l2")
    settings = settings_from_params(PAPER, run.variant, run.scale, run.epochs, run.loss, run.seed)
    assert (settings.model, settings.scale, settings.loss) == ("drn", 2, "l2")
    assert settings.iterations == 100 * 1000


def test_a_new_ablation_needs_only_an_entry_in_params():
    params = copy.deepcopy(DEMO)
    params["ablations"]["width"] = {"models": ["drn_plus"], "scale": 2, "epochs": 0.1,
                                    "dataset": "photos", "title": "Wider blocks"}  # fmt: skip
    validate_params(params)
    plan = build_plan(params)
    assert plan.run("drn_plus_x2_e0.1").roles == ("ablation",)
    assert [e.label for e in plan.group("width")] == ["width-drn_plus"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"models": ["drn"], "losses": ["l2"]}, "ablations.loss"),
        ({"dataset": "Set6"}, "ablations.loss.dataset: unknown source 'Set6'"),
        ({"model": "drn_tiny"}, "ablations.loss.model: unknown model 'drn_tiny'"),
    ],
)
def test_a_broken_ablation_is_refused_naming_its_key(change, message):
    params = copy.deepcopy(DEMO)
    params["ablations"]["loss"].update(change)
    with pytest.raises(UsageError, match=message):
        validate_params(params)


def test_drn_plan_prints_the_runs_and_as_json_the_whole_plan(capsys):
    assert main(["plan", "--params", str(REPO / "params.yaml")]) == 0
    out = capsys.readouterr().out
    assert "11 training runs" in out and "95 evaluations" in out
    assert "3 runs served by milestones of others" in out
    assert "runs/drn_x3/checkpoints/step_100000.pt" in out
    assert main(["plan", "--params", str(REPO / "params.yaml"), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(build_plan(PAPER).to_json()))


def test_drn_train_run_refuses_a_run_the_plan_does_not_have(capsys, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(DEMO))
    assert main(["train", "--run", "drn_x9", "--params", str(params)]) == 2
    assert "no run 'drn_x9' in the plan of params.yaml; it has: drn_x2, " in capsys.readouterr().err
    assert main(["train", "--run", "drn_x2", "--model", "drn", "--params", str(params)]) == 2
    assert "the plan gives the model" in capsys.readouterr().err
    assert main(["train", "--params", str(params)]) == 2
    assert "give --run NAME" in capsys.readouterr().err


def test_the_plan_does_not_import_torch():
    code = "import sys, drn.pipeline.plan, drn.pipeline.settings; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
