"""The report takes every label, path, column and run from the plan (drn/plan.py): an ablation
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

from drn.config import validate_params
from drn.plan import build_plan

THROWAWAY = {
    "title": "Throw-away: DRN against DRN+ for a moment",
    "models": ["drn", "drn_plus"],
    "scale": 2,
    "epochs": 0.3,
    "dataset": "photos",
}
# (psnr, ssim) of each fake evaluation JSON, by label
FAKE = {
    "bicubic": (33.67, 0.9303),  # on Set5 x2 (the paper's: 33.66/0.9300)
    "distillation-drn": (30.11, 0.8811),
    "distillation-drn_no_rd": (29.22, 0.8722),
    "loss-l2": (28.33, 0.8633),
    "width-drn": (31.44, 0.9044),
    "width-drn_plus": (31.55, 0.9055),
    "drn": (37.66, 0.9566),
}


def params_with_throwaway() -> dict:
    """demo/params.yaml, plus Set5 as an evaluation dataset, DRN's self-ensemble only, and an
    ablation `width` that no code knows of."""
    params = yaml.safe_load((REPO / "demo/params.yaml").read_text())
    params["sources"]["Set5"] = {"local": None}
    params["evaluation"].update(datasets=["photos", "Set5"], ensemble_models=["drn"])
    params["ablations"]["width"] = dict(THROWAWAY)
    params["models"] = {name: dict(TINY) for name in ("drn", "drn_plus", "drn_no_rd")}
    params["tracking"]["enabled"] = False
    params["report"]["visuals"] = [{"dataset": "photos", "image": "chelsea", "scale": 2}]
    return params


def fake_checkpoint(path: Path, variant: str) -> None:
    from drn.checkpoint import save_checkpoint
    from drn.models import build_model

    training = {
        "step": 600, "train_seconds": 42.0, "device": "CPU (test)", "data_version": "f" * 16,
        "history": {"train": [[100, 0.1], [600, 0.05]], "val": [[300, 30.0], [600, 31.0]]},
    }  # fmt: skip
    save_checkpoint(path, build_model(variant, 2, **TINY), training)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """The report of params_with_throwaway() in a fresh folder: the JSONs of FAKE written where
    the plan says (on Set5 only, for the Table 3 labels), drn_x2_e0.3
    trained (a checkpoint), drn_x2 only a model.pt (for the visual), every other run not."""
    from drn.report import build_report

    folder = tmp_path_factory.mktemp("report")
    params = params_with_throwaway()
    validate_params(params, "params.yaml")  # a legitimate params.yaml, schema and all
    plan = build_plan(params)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        for evaluation in plan.evaluations:
            on_set5 = evaluation.group != "table3" or evaluation.dataset == "Set5"
            if evaluation.label in FAKE and on_set5:
                psnr, ssim = FAKE[evaluation.label]
                path = Path(evaluation.path)
                path.parent.mkdir(parents=True, exist_ok=True)
                result = {"psnr": psnr, "ssim": ssim, "scale": evaluation.scale, "images": {}}
                path.write_text(json.dumps(result))
        run = plan.run("drn_x2_e0.3")
        fake_checkpoint(Path(run.directory) / "checkpoints" / "last.pt", run.variant)
        fake_checkpoint(Path(plan.run("drn_x2").model), "drn")  # a model, no training record
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
    assert "Ablation `width`: photos x2 after 0.3 epochs, one run per model." in block
    assert "Paper PSNR" not in block  # it redoes no table of the paper
    rows = table_rows(block, "drn")
    assert rows == [
        ["drn", "drn_x2_e0.3", "31.44 / 0.9044"],
        ["drn_plus", "drn_plus_x2_e0.3", "31.55 / 0.9055"],
    ]
    assert [r[1] for r in rows] == [plan.evaluation(f"width-{r[0]}", 2, "photos").run for r in rows]
    assert "figures/ablation-width.png" in block
    assert (folder / "reports/figures/ablation-width.png").read_bytes()[:4] == b"\x89PNG"
    assert f'<h2 id="ablation-width">{THROWAWAY["title"]}</h2>' in html


def test_a_paper_ablation_is_beside_the_papers_table_and_the_others_are_generic(workspace):
    markdown = workspace[3]
    distillation = section(markdown, "Residual distilling blocks on and off (Table 2)")
    assert "The paper's Table 2 is Set5 x3 after 100 epochs: not comparable." in distillation
    assert table_rows(distillation, "drn") == [
        ["drn", "drn_x2_e0.2", "30.11 / 0.8811", "33.98"],
        ["drn_no_rd", "drn_no_rd_x2_e0.2", "29.22 / 0.8722", "33.83"],
    ]
    loss = section(markdown, "MAE (the paper's loss) against MSE")
    assert "one run per loss" in loss and "Paper PSNR" not in loss
    # the l1 arm shares its run with distillation-drn (identical settings: one run)
    assert table_rows(loss, "l") == [
        ["l1", "drn_x2_e0.2", "not run"],
        ["l2", "drn_x2_e0.2_l2", "28.33 / 0.8633"],
    ]


def test_table3_columns_are_the_plans_arms_and_each_cell_says_why_it_is_empty(workspace):
    markdown = workspace[3]
    block = section(markdown, "Table 3: benchmark results")
    header = next(line for line in block.splitlines() if line.startswith("| Dataset |"))
    assert header == "| Dataset | Scale | Bicubic | DRN | DRN (self-ensemble) | DRN+ |"
    assert "Not evaluated by this plan, so no column: DRN+ (self-ensemble)." in block
    rows = {(r[0], r[1]): r[2:] for r in table_rows(block, "") if r[1].startswith("x")}
    assert len(rows) == 15
    assert rows["Set5", "x2"] == [
        "33.67 / 0.9303<br>33.66 / 0.9300<br>+0.01 / +0.0003",
        "**37.66 / 0.9566**<br>38.06 / 0.9607<br>-0.40 / -0.0041",
        "not run<br>38.06 / 0.9607",
        "not run<br>38.18 / 0.9612",
    ]  # bold: our best in the row; the self-ensemble sits beside the paper's DRN
    assert rows["Set5", "x3"][0] == "not planned<br>30.39 / 0.8688"  # the demo is x2 only
    assert "- **DRN x2**: below the paper: mean -0.40 dB over 1 set (-0.40 to -0.40)" in markdown
    assert "- **DRN+ x2**: not run" in markdown and "- **DRN+ x3**: not planned" in markdown
    assert "DRN+ (self-ensemble) x2" not in markdown  # no verdict for a column not planned
    other = section(markdown, "Other evaluations")
    assert "| drn | x2 | photos | - | not run | drn_x2 |" in other
    assert "| bicubic | x2 | photos | - | not run | - |" in other
    assert "Set5" not in other and "distillation" not in other  # shown in their own sections


def test_provenance_lists_every_run_of_the_plan_with_its_roles(workspace):
    _, plan, html, markdown = workspace
    block = section(markdown, "Provenance")
    rows = {r[0]: r[1:] for r in table_rows(block, "") if r[0] in {p.name for p in plan.runs}}
    assert list(rows) == [run.name for run in plan.runs]
    assert rows["drn_x2_e0.3"][:5] == ["ablation", "600", "CPU (test)", "42 s", "none (CPU)"]
    assert rows["drn_x2"][:2] == ["main", "not run"]
    assert rows["drn_x2_e0.2"][:2] == ["ablation", "not run"]  # distillation-drn and loss-l1
    assert re.search(r'<td class="label">drn_x2</td><td class="label">main</td>\s*'
                     r'<td class="label notrun" colspan="7">not run</td>', html)  # fmt: skip


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
    from drn.models import build_from_params
    from drn.models.complexity import trainable_parameters
    from drn.report import _model_parameters

    params = params_with_throwaway()
    for variant in ("drn", "drn_plus"):
        counted = trainable_parameters(build_from_params(params, variant, 4))
        assert _model_parameters(variant, 4, params) == counted
    assert _model_parameters("drn", 4, params) < _model_parameters("drn", 4, {})
