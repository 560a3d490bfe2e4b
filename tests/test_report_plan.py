"""The report takes every label, path, column and run from the plan (drn/pipeline/plan.py): an
ablation
added only in params.yaml appears with no code change, Table 3's columns are the plan's, and a run
of the plan not trained yet shows as not run. Fast: fake evaluation JSONs written where the plan
says, real checkpoints of tiny models, no pipeline."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from PIL import Image
from pipeline import TINY
from skimage import data

from drn.pipeline.params import validate_params
from drn.pipeline.plan import build_plan

THROWAWAY = {
    "title": "Throw-away: DRN against DRN+ for a moment",
    "models": ["drn", "drn_plus"],
    "scale": 2,
    "epochs": 0.3,
    "dataset": "photos",
}
# (psnr, ssim) of each fake evaluation JSON, by label (a seed s > 0: label_s{s}); each has three
# images img0..img2 at psnr + OFFSETS[label] (default -0.1, 0, +0.1), so that psnr is their mean
FAKE = {
    "bicubic": (33.67, 0.9303),  # on Set5 x2 (the paper's: 33.66/0.9300)
    "distillation-drn": (30.11, 0.8811),
    "distillation-drn_no_rd": (29.81, 0.8722),  # per image 0.25..0.35 dB below drn's
    "loss-l1": (28.33, 0.8633),  # l1 and l2 of the same mean, per image -0.2, 0, +0.2 apart
    "loss-l1_s1": (28.33, 0.8633),
    "loss-l2": (28.33, 0.8633),
    "loss-l2_s1": (28.33, 0.8633),
    "width-drn": (31.44, 0.9044),
    "width-drn_plus": (31.55, 0.9055),
    "drn": (37.66, 0.9566),
    "drn_s1": (37.70, 0.9570),  # drn's second seed: 37.68 +- 0.03 (n = 2)
    "edsr_baseline": (37.95, 0.9600),  # the control on Set5 x2 (published: 37.98/0.9604)
}
BICUBIC_PHOTOS = (29.00, 0.8500)  # bicubic on photos x2: the floor of the milestones there
OFFSETS = {
    "distillation-drn_no_rd": (-0.15, 0.0, 0.15),
    "loss-l2": (0.1, 0.0, -0.1),
    "loss-l2_s1": (0.1, 0.0, -0.1),
}


def params_with_throwaway() -> dict:
    """demo/params.yaml, plus Set5 as an evaluation dataset, DRN's self-ensemble only, the
    control edsr_baseline at its published size, and an ablation `width` that no code knows of."""
    params = yaml.safe_load((REPO / "demo/params.yaml").read_text())
    params["controls"] = ["edsr_baseline"]
    params["train"]["epochs"].setdefault("edsr_baseline", 0.6)
    params["sources"]["Set5"] = {"local": None}
    params["evaluation"].update(datasets=["photos", "Set5"], ensemble_models=["drn"])
    params["ablations"]["width"] = dict(THROWAWAY)
    params["models"] = {name: dict(TINY) for name in ("drn", "drn_plus")}
    params["models"]["drn_no_rd"] = {**TINY, "distill": 0}  # TINY's distill would make it drn
    params["tracking"]["enabled"] = False
    params["report"]["visuals"] = [{"dataset": "photos", "image": "chelsea", "scale": 2}]
    return params


def fake_result(psnr: float, ssim: float, scale: int, offsets=(-0.1, 0.0, 0.1)) -> dict:
    """An evaluation JSON of mean ``psnr``: one image per offset (img0, img1, ...)."""
    images = [
        {"name": f"img{i}", "psnr": psnr + offset, "ssim": ssim} for i, offset in enumerate(offsets)
    ]
    return {"psnr": psnr, "ssim": ssim, "scale": scale, "images": images}


VAL_CURVE = [[100, 29.0], [200, 29.5], [300, 30.0], [600, 31.0]]  # drn_x2's validation PSNR


def fake_checkpoint(path: Path, variant: str) -> None:
    from drn.engine.checkpoint import save_checkpoint
    from drn.models import build_model

    training = {
        "step": 600, "train_seconds": 42.0, "device": "CPU (test)", "data_version": "f" * 16,
        "history": {"train": [[100, 0.1], [600, 0.05]], "val": VAL_CURVE},
    }  # fmt: skip
    save_checkpoint(path, build_model(variant, 2, **TINY), training)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """The report of params_with_throwaway() in a fresh folder: the JSONs of FAKE written where
    the plan says (on Set5 only, for the Table 3 and calibration labels; bicubic also on photos,
    the milestones' floor), drn_x2 trained (a checkpoint, its model.pt and the checkpoints it
    keeps at steps 200 and 300, which serve drn_x2_e0.2 and drn_x2_e0.3), every other run not."""
    from drn.report import build_report

    folder = tmp_path_factory.mktemp("report")
    params = params_with_throwaway()
    validate_params(params, "params.yaml")  # a legitimate params.yaml, schema and all
    plan = build_plan(params)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        for evaluation in plan.evaluations:
            on_set5 = evaluation.group not in ("table3", "calibration")
            if evaluation.label in FAKE and (on_set5 or evaluation.dataset == "Set5"):
                psnr, ssim = FAKE[evaluation.label]
                path = Path(evaluation.path)
                path.parent.mkdir(parents=True, exist_ok=True)
                offsets = OFFSETS.get(evaluation.label, (-0.1, 0.0, 0.1))
                path.write_text(json.dumps(fake_result(psnr, ssim, evaluation.scale, offsets)))
        floor = Path(plan.evaluation("bicubic", 2, "photos").path)  # the milestones' floor
        floor.parent.mkdir(parents=True, exist_ok=True)
        floor.write_text(json.dumps(fake_result(*BICUBIC_PHOTOS, 2)))
        run = plan.run("drn_x2")
        fake_checkpoint(Path(run.directory) / "checkpoints" / "last.pt", run.variant)
        fake_checkpoint(Path(run.model), "drn")  # its model (for the visual)
        for served in plan.served_runs("drn_x2"):  # the milestones it kept: they stay served
            fake_checkpoint(Path(served.model), "drn")
        photo = data.chelsea()[100:196, 150:246]
        Path("data/photos").mkdir(parents=True)
        Image.fromarray(photo).save("data/photos/chelsea.png")
        build_report(params)
    html = (folder / "reports/report.html").read_text()
    markdown = (folder / "reports/report.md").read_text()
    return folder, plan, html, markdown


def section(markdown: str, heading: str) -> str:
    return markdown.split(f"## {heading}\n")[1].split("\n## ")[0]


def table_rows(block: str, first: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip("| ").split("|")]
        for line in block.splitlines()
        if line.startswith(f"| {first}")
    ]


def test_an_ablation_added_only_in_params_yaml_appears_in_the_report(workspace):
    folder, plan, html, markdown = workspace
    block = section(markdown, THROWAWAY["title"])
    assert "Ablation `width`: photos x2 after 0.3 epochs, one run per model and seed." in block
    assert "Paper PSNR" not in block  # it redoes no table of the paper
    rows = table_rows(block, "drn")[:2]
    assert rows == [
        ["drn", "drn_x2_e0.3, drn_x2_e0.3_s1", "31.44 ± - / 0.9044 (n = 1 of 2)"],
        ["drn_plus", "drn_plus_x2_e0.3", "31.55 ± - / 0.9055 (n = 1)"],
    ]  # drn has two seeds in the demo, one evaluated here; sd "-" for one
    runs = [r[1].split(", ")[0] for r in rows]
    assert runs == [plan.evaluation(f"width-{r[0]}", 2, "photos").run for r in rows]
    assert "- drn - drn_plus: mean -0.11 dB over 3 pairs" in block
    assert "the paper makes no claim about it." in block
    assert "figures/ablation-width.png" in block
    assert (folder / "reports/figures/ablation-width.png").read_bytes()[:4] == b"\x89PNG"
    assert f'<h2 id="ablation-width">{THROWAWAY["title"]}</h2>' in html


def interval(row: list[str]) -> tuple[float, float]:
    low, high = row[3].split(" to ")
    return float(low), float(high)


def test_a_paper_ablation_is_beside_the_papers_table_with_paired_intervals(workspace):
    markdown = workspace[3]
    distillation = section(markdown, "Residual distilling blocks on and off (Table 2)")
    assert "The paper's Table 2 is Set5 x3 after 100 epochs: not comparable." in distillation
    assert table_rows(distillation, "drn")[:2] == [
        ["drn", "drn_x2_e0.2, drn_x2_e0.2_s1", "30.11 ± - / 0.8811 (n = 1 of 2)", "33.98"],
        ["drn_no_rd", "drn_no_rd_x2_e0.2", "29.81 ± - / 0.8722 (n = 1)", "33.83"],
    ]
    # drn is 0.35, 0.30, 0.25 dB above drn_no_rd on the three images of the seed both have
    contrast = table_rows(distillation, "drn - drn_no_rd")[0]
    assert contrast[1:3] == ["3 (3 images x 1 seed)", "+0.30"]
    low, high = interval(contrast)
    assert 0.25 <= low < 0.30 < high <= 0.35
    assert contrast[4] == "BCa"
    assert contrast[5] == "+0.15 dB (Table 2: RDBs 33.98 - No RDBs 33.83)"
    assert (
        "- drn - drn_no_rd: supported (the interval excludes 0 on the paper's side" in distillation
    )
    assert "the paper's +0.15 dB lies outside the interval." in distillation
    loss = section(markdown, "MAE (the paper's loss) against MSE")
    assert "one run per loss and seed" in loss and "Paper PSNR" not in loss
    # the l1 arm shares its runs with distillation-drn (identical settings: one run)
    assert table_rows(loss, "l")[:2] == [
        ["l1", "drn_x2_e0.2, drn_x2_e0.2_s1", "28.33 ± 0.00 / 0.8633 (n = 2)"],
        ["l2", "drn_x2_e0.2_l2, drn_x2_e0.2_l2_s1", "28.33 ± 0.00 / 0.8633 (n = 2)"],
    ]
    # equal means, per image -0.2, 0, +0.2 apart in both seeds: the interval straddles 0
    contrast = table_rows(loss, "l1 - l2")[0]
    assert contrast[1] == "6 (3 images x 2 seeds)"
    low, high = interval(contrast)
    assert -0.2 <= low < 0 < high <= 0.2
    assert contrast[5].startswith("direction only, first arm better; no size (Sec. 2.5")
    assert "- l1 - l2: not resolved by this data (the interval contains 0;" in loss
    assert "the paper gives no size." in loss


def test_table3_cells_are_over_seeds_and_each_empty_one_says_why(workspace):
    markdown = workspace[3]
    block = section(markdown, "Table 3: benchmark results")
    header = next(line for line in block.splitlines() if line.startswith("| Dataset |"))
    assert header == "| Dataset | Scale | Bicubic | DRN | DRN (self-ensemble) | DRN+ |"
    assert "Not evaluated by this plan, so no column: DRN+ (self-ensemble)." in block
    rows = {(r[0], r[1]): r[2:] for r in table_rows(block, "") if r[1].startswith("x")}
    assert len(rows) == 15
    assert rows["Set5", "x2"] == [
        "33.67 / 0.9303<br>33.66 / 0.9300<br>+0.01 / +0.0003",  # bicubic: not trained, no seeds
        "**37.68 ± 0.03 / 0.9568 (n = 2)**<br>38.06 / 0.9607<br>-0.38 / -0.0039",
        "not run<br>38.06 / 0.9607",
        "not run<br>38.18 / 0.9612",
    ]  # bold: our best in the row; the self-ensemble sits beside the paper's DRN
    assert rows["Set5", "x3"][0] == "not planned<br>30.39 / 0.8688"  # the demo is x2 only
    assert (
        "- **DRN x2**: below the paper: mean -0.38 dB over 1 set "
        "(seeds' range -0.40 to -0.36; n = 2 seeds)" in markdown
    )
    assert "- **DRN+ x2**: not run" in markdown and "- **DRN+ x3**: not planned" in markdown
    assert "DRN+ (self-ensemble) x2" not in markdown  # no verdict for a column not planned
    other = section(markdown, "Other evaluations")
    assert "| drn | x2 | photos | - | not run | drn_x2 |" in other
    assert "| drn_s1 | x2 | photos | - | not run | drn_x2_s1 |" in other
    assert "| bicubic | x2 | photos | 3 | 29.00 / 0.8500 | - |" in other
    assert "Set5" not in other and "distillation" not in other  # shown in their own sections
    assert "edsr_baseline" not in other  # in Calibration


def test_the_demo_scale_runs_are_labelled_so(workspace):
    _, _, html, markdown = workspace
    label = (
        "demo-scale run (DRN: 600 iterations; the paper: 800,000. "
        "DRN+: 400 iterations; the paper: 300,000)"
    )
    for heading in ("Verdicts", "Table 3: benchmark results"):
        assert f"**This is a {label}" in section(markdown, heading)
    distillation = section(markdown, "Residual distilling blocks on and off (Table 2)")
    assert "**This is a demo-scale run (200 iterations; the paper: 100,000)**" in distillation
    loss = section(markdown, "MAE (the paper's loss) against MSE")
    assert "**This is a demo-scale run (200 iterations; the paper: 800,000)**" in loss
    calibration = section(markdown, "Calibration")
    assert "demo-scale run (600 iterations; the published recipe: 300,000)" in calibration
    milestones = section(markdown, "Milestones")  # steps of the demo-scale main runs
    assert f"**This is a {label}**" in milestones
    # verdicts, Table 3, the three ablations, the milestones, the control
    assert html.count("<b>This is a demo-scale run (") == 7


def test_the_papers_recipe_is_not_demo_scale():
    from drn.report import gather

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    reference = gather.paper()
    plan = build_plan(params)
    assert gather.main_scale(plan, params, reference) == ""
    assert all(a.scale_label == "" for a in gather.ablations(plan, params, reference))
    assert all(c.scale_label == "" for c in gather.calibrations(plan, params, reference, 0.05))


def test_calibration_puts_the_control_beside_its_published_numbers(workspace):
    _, _, html, markdown = workspace
    block = section(markdown, "Calibration")
    assert "### EDSR baseline (`edsr_baseline`)" in block
    assert "Published: the EDSR authors' released baseline weights" in block
    assert "Coloquinte/torchSR" in block and "Caveats:" in block
    rows = {(r[0], r[1]): r[2:] for r in table_rows(block, "") if r[1:2] and r[1].startswith("x")}
    assert rows["Set5", "x2"] == [
        "37.95 ± - / 0.9600 (n = 1)", "37.98 / 0.9604", "-0.03 / -0.0004", "reproduced",
        "37.99/0.9604 (srtransgan)",
    ]  # fmt: skip
    assert rows["photos", "x2"] == ["not run", "not published", "-", "-", "-"]
    assert (
        "- **EDSR baseline x2**: reproduced: within 0.05 dB on all 1 set (mean -0.03; n = 1 seed)"
        in block
    )
    assert "| x2 | 1,369,859 | 1.37M | matches |" in block  # the published size
    assert "EDSR baseline reproduces its published numbers wherever it ran" in block
    assert "evidence about the paper" in block
    assert '<h2 id="calibration">Calibration</h2>' in html


def test_a_parameter_count_matches_at_the_published_precision():
    from drn.report.sizes import ParameterCheck

    assert ParameterCheck(2, 1_369_859, "1.37M").matches
    assert ParameterCheck(4, 1_517_571, "1.52M").matches
    assert not ParameterCheck(2, 1_379_859, "1.37M").matches
    assert ParameterCheck(2, 665_000, "665K").matches
    assert ParameterCheck(2, 1_369_859, None).matches is None


def calibration(kinds_and_deltas, scale_label=""):
    from drn.report.calibration import Calibration
    from drn.report.stats import Verdict

    verdicts = []
    for scale, deltas in kinds_and_deltas:
        found = Verdict("EDSR baseline", scale, deltas, 0.05)
        found.against = "the published numbers"
        verdicts.append(found)
    return Calibration("edsr_baseline", "EDSR baseline", [], verdicts, [], {}, scale_label)


@pytest.mark.parametrize(
    ("verdicts", "reading"),
    [
        ([(2, [0.01, -0.02])], "reproduces its published numbers wherever it ran: the pipeline"),
        ([(2, [0.01]), (4, [-0.3])], "is off its published numbers (x4 below, mean -0.30 dB)"),
        ([(2, [])], "is in the plan but has no result yet"),
    ],
)
def test_the_calibration_reading_for_drns_verdicts(verdicts, reading):
    from drn.report.calibration import calibration_reading as _calibration_reading

    found = calibration(verdicts)
    assert reading in _calibration_reading(found)
    if found.case == "reproduces":
        assert "a gap between DRN and the paper is evidence about the paper" in (
            _calibration_reading(found)
        )
    if found.case == "off":
        assert "first evidence about the pipeline, not about the paper" in (
            _calibration_reading(found)
        )
    assert "No control in this plan" in _calibration_reading(None)
    labelled = _calibration_reading(calibration(verdicts, "demo-scale run (6 iterations; x)"))
    assert labelled.startswith("This is a demo-scale run (6 iterations; x): ")


def test_provenance_lists_every_run_of_the_plan_with_its_roles(workspace):
    _, plan, html, markdown = workspace
    block = section(markdown, "Provenance")
    rows = {r[0]: r[1:] for r in table_rows(block, "") if r[0] in {p.name for p in plan.runs}}
    assert list(rows) == [run.name for run in plan.runs]
    assert rows["drn_x2"][:5] == ["main", "600", "CPU (test)", "42 s", "none (CPU)"]
    assert rows["drn_x2_s1"][:2] == ["main", "not run"]
    served = "a milestone: drn_x2's checkpoint at this step, not trained itself"
    # drn_x2_e0.2: distillation-drn and loss-l1; neither it nor drn_x2_e0.3 is trained itself
    assert rows["drn_x2_e0.2"][:3] == ["ablation", "200", served]
    assert rows["drn_x2_e0.3"][:3] == ["ablation", "300", served]
    assert rows["drn_x2_e0.3"][-1] == "none (in drn_x2's)"  # drn_x2's projection holds it
    trained = [row for name, row in rows.items() if plan.run(name).trained]
    assert all(row[-1] == "none (CPU)" for row in trained)  # projected: the demo's CPU
    assert re.search(r'<td class="label">drn_x2_s1</td><td class="label">main</td>\s*'
                     r'<td class="label notrun" colspan="7">not run</td>', html)  # fmt: skip


def test_provenance_puts_the_projected_gpu_hours_beside_each_run():
    from drn.pipeline.cost import estimate
    from drn.pipeline.params import load_params
    from drn.report.provenance import projected_gpu_hours as _projected

    paper = load_params(REPO / "params.yaml")
    plan = build_plan(paper)
    measured, derived = plan.run("drn_x2"), plan.run("drn_no_rd_x3_e100")
    assert (
        _projected(paper, measured) == f"{estimate(paper, measured).gpu_hours:.2f} (measured rate)"
    )
    assert _projected(paper, derived).endswith("(derived rate)")


def test_sizes_and_visuals_use_the_plans_models(workspace):
    markdown = workspace[3]
    sizes = section(markdown, "Performance against model size (Fig. 2)")
    ours = {r[0]: r[1:] for r in table_rows(sizes, "DRN")}
    assert list(ours) == ["DRN (ours)", "DRN+ (ours)"]
    assert ours["DRN (ours)"][1] == "not planned"  # the demo evaluates no Set5 x4
    visuals = section(markdown, "Visual comparisons (Figs. 1, 6, 8)")
    assert "![photos chelsea, x2, crop 96x96 at (0, 0)](figures/visual1.png)" in visuals


def test_a_visual_shows_the_plans_main_model_of_each_variant(workspace, monkeypatch):
    from drn.report.visuals import comparison

    folder, plan, _, _ = workspace
    monkeypatch.chdir(folder)
    params = params_with_throwaway()
    spec = {"dataset": "photos", "image": "chelsea", "scale": 2}
    panels = comparison(spec, params, plan, 32, "cpu")["panels"]
    captions = [caption for caption, _ in panels]
    assert captions[0] == "HR" and re.fullmatch(r"Bicubic: \d+\.\d\d dB", captions[1])
    assert re.fullmatch(r"DRN: \d+\.\d\d dB", captions[2])  # runs/drn_x2/model.pt
    assert captions[3:] == ["DRN+: not run"]  # drn_plus_x2 is in the plan, not trained
    assert all(pixels.shape[:2] == (32, 32) for _, pixels in panels[:3])
    at_x3 = comparison({**spec, "scale": 3}, params, plan, 32, "cpu")["panels"]
    assert [caption for caption, _ in at_x3[2:]] == ["DRN: not planned", "DRN+: not planned"]


def test_model_parameters_are_counted_with_params_yamls_sizes():
    from drn.models.complexity import trainable_parameters
    from drn.pipeline.params import build_from_params
    from drn.report.sizes import model_parameters as _model_parameters

    params = params_with_throwaway()
    for variant in ("drn", "drn_plus"):
        counted = trainable_parameters(build_from_params(params, variant, 4))
        assert _model_parameters(variant, 4, params) == counted
    assert _model_parameters("drn", 4, params) < _model_parameters("drn", 4, {})


def test_a_control_without_published_numbers_says_so():
    found = calibration([(2, [])])
    assert found.source_line == "No published numbers in drn/reference/edsr_baseline.yaml."
    assert found.case == "not run"


def test_the_milestones_section_sets_each_milestone_beside_what_it_should_reach(workspace):
    _, plan, html, markdown = workspace
    block = section(markdown, "Milestones")
    rows = {r[0]: r[1:] for r in table_rows(block, "") if r[0] and "-" in r[0]}
    served = {e.label for e in plan.evaluations if e.run and not plan.run(e.run).trained}
    assert set(rows) == served  # one row per milestone evaluation of the plan
    assert list(rows)[:2] == ["distillation-drn", "loss-l1"]  # drn_x2 first: the plan's order
    floor = "29.00, bicubic (no published number at this point)"  # photos: no paper's number
    assert rows["distillation-drn"] == [
        "drn_x2_e0.2", "drn_x2", "200", "photos x2", "30.11", floor, "+1.11",
        "on course (demo scale)",
    ]  # fmt: skip
    assert rows["loss-l1"][4:] == ["28.33", floor, "-0.67", "behind (demo scale)"]
    assert rows["width-drn"][:3] == ["drn_x2_e0.3", "drn_x2", "300"]
    assert rows["distillation-drn_s1"][4:] == [
        "not evaluated yet", floor, "-", "not evaluated yet (demo scale)",
    ]  # fmt: skip
    assert '<h2 id="milestones">Milestones</h2>' in html
    assert re.search(r'<td class="label">loss-l1</td>.*?<td>-0\.67</td>\s*'
                     r'<td class="label">behind \(demo scale\)</td>', html, re.S)  # fmt: skip
    assert '<span class="notrun">not evaluated yet</span> (demo scale)' in html
