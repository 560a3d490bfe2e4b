"""Milestones (drn/report/milestones.py): a run served by a longer run's checkpoint is set beside
the number it should reach there (the paper's where its ablation redoes a table of the paper at
the same dataset, scale and epochs, else bicubic's as a floor), the ablations' validation curves
are one line per arm and seed (a milestone's cut at its step), and a verdict over one dataset
gives its seeds' range. Fast: the plans of params.yaml and demo/params.yaml, fake JSONs."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from drn.pipeline.plan import build_plan
from drn.report.ablations import curve_series
from drn.report.milestones import (
    BICUBIC_REFERENCE,
    NOT_EVALUATED,
    Expectation,
    expectation,
    line,
    milestone,
    milestone_rows,
    tolerance_db,
    verdict,
)
from drn.report.reference import paper
from drn.report.stats import Verdict

TABLE2 = "the paper's Table 2 (Set5 x3, 100 epochs)"


def paper_params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def demo_params() -> dict:
    return yaml.safe_load((REPO / "demo/params.yaml").read_text())


def plan_of(params: dict):
    return build_plan(params, None)  # never asks the run directories: every milestone served


def evaluation(plan, label: str, scale: int, dataset: str = "Set5"):
    return plan.evaluation(label, scale, dataset)


def test_a_table2_arm_at_its_dataset_scale_and_epochs_expects_the_papers_number():
    params = paper_params()
    plan = plan_of(params)
    drn = evaluation(plan, "distillation-drn", 3)
    assert not plan.run(drn.run).trained  # drn_x3_e100: drn_x3's checkpoint at step 100000
    assert expectation(params, plan, drn, 30.39) == Expectation(33.98, TABLE2, "paper")
    plus = evaluation(plan, "distillation-drn_plus", 3)  # the paper prints DBN+: read as DRN+
    assert expectation(params, plan, plus, None) == Expectation(34.35, TABLE2, "paper")
    no_rd = evaluation(plan, "distillation-drn_no_rd", 3)
    assert expectation(params, plan, no_rd, None) == Expectation(33.83, TABLE2, "paper")


def test_other_epochs_than_the_tables_are_not_set_beside_the_papers_number():
    params = paper_params()
    params["ablations"]["distillation"]["epochs"] = 50
    plan = plan_of(params)
    drn = evaluation(plan, "distillation-drn", 3)
    assert plan.run(drn.run).epochs == 50
    assert expectation(params, plan, drn, 30.39) == Expectation(30.39, BICUBIC_REFERENCE, "bicubic")
    assert expectation(params, plan, drn, None) is None


def test_another_set_or_scale_or_no_paper_table_falls_back_to_bicubic():
    params = paper_params()
    moved = copy.deepcopy(params)
    moved["ablations"]["distillation"].update(dataset="Set14")
    plan = plan_of(moved)
    on_set14 = evaluation(plan, "distillation-drn", 3, "Set14")
    assert expectation(moved, plan, on_set14, 27.55).kind == "bicubic"
    plan = plan_of(params)
    loss = evaluation(plan, "loss-l1", 2)  # the loss ablation redoes no table of the paper
    assert expectation(params, plan, loss, 33.66) == Expectation(33.66, BICUBIC_REFERENCE,
                                                                 "bicubic")  # fmt: skip
    assert expectation(params, plan, loss, None) is None
    unknown = copy.deepcopy(params)
    del unknown["ablations"]["distillation"]["paper"]
    plan = plan_of(unknown)
    assert expectation(unknown, plan, evaluation(plan, "distillation-drn", 3), None) is None


@pytest.mark.parametrize(
    ("psnr", "found"),
    [(33.87, "behind"), (33.88, "on course"), (33.98, "on course"), (34.08, "on course"),
     (34.09, "ahead")],
)  # fmt: skip
def test_against_the_paper_a_milestone_is_on_course_within_the_tolerance(psnr, found):
    block = verdict(psnr, Expectation(33.98, TABLE2, "paper"), 0.1)
    assert block["verdict"] == found
    assert block["delta_db"] == pytest.approx(psnr - 33.98)
    assert (block["expected"], block["reference"], block["tolerance_db"]) == (33.98, TABLE2, 0.1)


def test_against_bicubic_a_milestone_is_behind_at_or_below_it_and_never_ahead():
    floor = Expectation(30.39, BICUBIC_REFERENCE, "bicubic")
    assert verdict(30.39, floor, 0.1)["verdict"] == "behind"
    assert verdict(30.0, floor, 0.1)["verdict"] == "behind"
    assert verdict(30.40, floor, 0.1)["verdict"] == "on course"
    assert verdict(40.0, floor, 0.1)["verdict"] == "on course"  # a floor: never ahead


def test_without_a_reference_the_verdict_says_so():
    assert verdict(31.0, None, 0.1) == {
        "expected": None, "reference": None, "tolerance_db": 0.1, "delta_db": None,
        "verdict": "no reference",
    }  # fmt: skip


def test_an_infinite_psnr_is_ahead_with_no_delta():
    found = verdict(math.inf, Expectation(33.98, TABLE2, "paper"), 0.1)
    assert (found["verdict"], found["delta_db"]) == ("ahead", None)
    json.dumps(found, allow_nan=False)  # as write_json writes it
    assert "inf dB, ahead (the paper's Table 2 (Set5 x3, 100 epochs): 33.98, - dB" in line(
        "drn_x3", 100000, "Set5", 3, math.inf, found
    )


def test_the_verdict_in_one_line():
    found = verdict(33.95, Expectation(33.98, TABLE2, "paper"), 0.1)
    assert line("drn_x3", 100000, "Set5", 3, 33.95, found) == (
        "milestone drn_x3 @ step 100000, Set5 x3: 33.95 dB, on course (the paper's Table 2 "
        "(Set5 x3, 100 epochs): 33.98, -0.03 dB, tolerance 0.10 dB)"
    )
    floor = verdict(30.2, Expectation(30.39, BICUBIC_REFERENCE, "bicubic"), 0.1)
    assert line("drn_x2", 200, "photos", 2, 30.2, floor) == (
        "milestone drn_x2 @ step 200, photos x2: 30.20 dB, behind (bicubic (no published number "
        "at this point): 30.39, -0.19 dB; behind at or below it)"
    )
    assert line("drn_x2", 200, "photos", 2, 30.2, verdict(30.2, None, 0.1)).endswith(
        "30.20 dB, no reference (no published number and no bicubic score at this point)"
    )


def test_the_json_block_of_a_milestone_evaluation():
    params = paper_params()
    plan = plan_of(params)
    block = milestone(params, plan, evaluation(plan, "distillation-drn", 3), 33.95, 30.39)
    assert block == {
        "run": "drn_x3_e100", "of": "drn_x3", "step": 100000, "expected": 33.98,
        "reference": TABLE2, "tolerance_db": 0.1, "delta_db": pytest.approx(-0.03),
        "verdict": "on course", "line": block["line"],
    }  # fmt: skip
    assert block["line"].startswith("milestone drn_x3 @ step 100000, Set5 x3: 33.95 dB")
    json.dumps(block, allow_nan=False)  # as write_json writes it
    with pytest.raises(ValueError, match="trained, not a milestone"):
        milestone(params, plan, evaluation(plan, "distillation-drn_no_rd", 3), 33.8, None)


def test_the_tolerance_is_a_setting_of_params_yaml():
    params = paper_params()
    assert tolerance_db(params) == params["train"]["milestone_tolerance_db"]
    del params["train"]["milestone_tolerance_db"]
    assert tolerance_db(params) == 0.1
    params["train"]["milestone_tolerance_db"] = 0.3
    plan = plan_of(params)
    block = milestone(params, plan, evaluation(plan, "distillation-drn", 3), 33.75, None)
    assert (block["verdict"], block["tolerance_db"]) == ("on course", 0.3)


def write(path: str, psnr: float) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({"psnr": psnr, "ssim": 0.9, "scale": 3, "images": []}))


def test_the_milestones_section_has_a_row_per_milestone_evaluation(tmp_path, monkeypatch):
    params = paper_params()
    plan = plan_of(params)
    monkeypatch.chdir(tmp_path)
    write(evaluation(plan, "distillation-drn", 3).path, 33.80)
    write(evaluation(plan, "bicubic", 3).path, 30.39)
    write(evaluation(plan, "loss-l1", 2).path, 36.9)  # no bicubic of Set5 x2 written
    found = milestone_rows(params, plan, paper())
    rows = {row.label: row for row in found.rows}
    assert list(rows) == ["loss-l1", "distillation-drn", "distillation-drn_plus"]  # serving run
    assert "distillation-drn_no_rd" not in rows  # trained itself: no milestone
    drn = rows["distillation-drn"]
    assert (drn.run, drn.of, drn.step, drn.dataset, drn.scale) == ("drn_x3_e100", "drn_x3",
                                                                   100000, "Set5", 3)  # fmt: skip
    assert (drn.psnr, drn.expected.psnr, drn.delta, drn.verdict) == (33.80, 33.98, "-0.18",
                                                                     "behind")  # fmt: skip
    plus = rows["distillation-drn_plus"]
    assert (plus.psnr, plus.verdict, plus.delta, plus.expected.psnr) == (
        None, NOT_EVALUATED, "-", 34.35,
    )  # fmt: skip
    loss = rows["loss-l1"]
    assert (loss.expected, loss.verdict, loss.delta) == (None, "no reference", "-")
    assert found.tolerance == 0.1 and found.scale_label == ""  # the paper's recipe


def test_the_demos_milestones_are_labelled_demo_scale():
    params = demo_params()
    found = milestone_rows(params, plan_of(params), paper())
    assert found.scale_label.startswith("demo-scale run (")
    assert {row.of for row in found.rows} == {"drn_x2", "drn_x2_s1", "drn_plus_x2"}


def test_an_ablations_curves_are_one_per_arm_and_seed_a_milestones_cut_at_its_step():
    params = demo_params()
    plan = plan_of(params)
    assert plan.run("drn_x2_e0.2").served_by == "drn_x2"
    curves = {
        "drn_x2": [[100, 28.0], [200, 29.0], [300, 30.0], [600, 31.0]],
        "drn_x2_s1": [[100, 27.5], [200, 28.5], [600, 30.5]],
        "drn_plus_x2": [[100, 28.2], [200, 29.2], [400, 31.2]],
        "drn_no_rd_x2_e0.2": [[100, 27.0], [200, 28.0]],
        "drn_x2_e0.2_l2": [[100, 26.0], [200, 27.0]],
    }
    assert curve_series(plan, "loss", curves) == [
        ("l1 (seed 0)", [[100, 28.0], [200, 29.0]]),  # drn_x2's, to step 200
        ("l1 (seed 1)", [[100, 27.5], [200, 28.5]]),  # drn_x2_s1's
        ("l2 (seed 0)", [[100, 26.0], [200, 27.0]]),  # trained itself
        ("l2 (seed 1)", []),  # drn_x2_e0.2_l2_s1: no curve yet
    ]
    assert curve_series(plan, "distillation", curves) == [
        ("drn (seed 0)", [[100, 28.0], [200, 29.0]]),
        ("drn (seed 1)", [[100, 27.5], [200, 28.5]]),
        ("drn_no_rd", [[100, 27.0], [200, 28.0]]),  # one seed: no seed in its name
        ("drn_plus", [[100, 28.2], [200, 29.2]]),
    ]


@pytest.mark.parametrize(
    ("deltas", "spreads", "seeds", "text"),
    [
        ([-3.68], [(-3.80, -3.56)], [2],
         "below the paper: mean -3.68 dB over 1 set (seeds' range -3.80 to -3.56; n = 2 seeds)"),
        ([-3.68], [None], [1], "below the paper: mean -3.68 dB over 1 set (n = 1 seed)"),
        ([-0.4, -0.2], [(-0.5, -0.3), (-0.3, -0.1)], [2, 2],
         "below the paper: mean -0.30 dB over 2 sets (-0.40 to -0.20; n = 2 seeds)"),
    ],
)  # fmt: skip
def test_a_verdict_over_one_set_gives_its_seeds_range(deltas, spreads, seeds, text):
    assert Verdict("DRN", 2, deltas, 0.05, spreads=spreads, seeds=seeds).text == text
