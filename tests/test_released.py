"""Released weights in the plan (params.yaml ``controls_released``): the EDSR authors' files, as
downloaded, are imported by a step of the DAG and evaluated on every dataset of the plan as
``edsr_baseline-released``, without training, at the checkpoint's own sizes (C = 64, B = 16).
A file that is not there is left out: ``drn plan`` warns and ``drn doctor`` fails, each naming
the file and the authors' URL; the rest of the plan is unchanged. The authors' real files are
never fetched: a file in EDSR-PyTorch's layout made here stands in for them."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import yaml
from conftest import REPO
from pipeline import BIN, project, run
from test_import import AuthorsEDSR
from test_workflow import dry_run, dvc_stages

from drn.cli import main
from drn.core.errors import UsageError
from drn.doctor import checklist
from drn.doctor.result import FAIL, OK, WARN
from drn.doctor.storage import check_released
from drn.engine import releases as engine_releases
from drn.engine.checkpoint import load_checkpoint
from drn.engine.releases import Release, file_digest, releases
from drn.pipeline.dvc_stages import dvc_yaml
from drn.pipeline.params import load_params, validate_params
from drn.pipeline.plan import RELEASED_GROUP, build_plan

slow = pytest.mark.slow

PAPER = load_params(REPO / "params.yaml")
DEMO = load_params(REPO / "demo/params.yaml")
AUTHORS = releases("edsr_baseline")  # drn/reference/edsr_baseline.yaml


def everywhere(path: str) -> bool:
    return True


def nowhere(path: str) -> bool:
    return False


def with_released(params, files):
    params = copy.deepcopy(params)
    params["controls_released"] = {"edsr_baseline": files}
    validate_params(params)
    return params


def demo_with_a_made_up_release(tmp_path):
    """The demo's settings, x2, with controls_released pointing at a file in EDSR-PyTorch's
    layout made here (random weights, C = 64, B = 16: not the demo's C = 32, B = 4 control)."""
    params = copy.deepcopy(DEMO)
    params["sources"]["Set5"] = {"local": str(REPO / "tests/data/Set5")}
    params["sources"]["photos"] = {"skimage": ["astronaut.png", "camera.png"]}
    params["controls_released"] = {"edsr_baseline": {"x2": "downloads/edsr_x2.pt"}}
    (tmp_path / "downloads").mkdir()
    torch.manual_seed(0)
    torch.save(AuthorsEDSR(2).state_dict(), tmp_path / "downloads/edsr_x2.pt")
    return params


# --- the plan ----------------------------------------------------------------------------------


def test_the_paper_plan_names_the_authors_three_files_and_evaluates_each_on_every_dataset():
    plan = build_plan(PAPER, present=everywhere)
    assert [(r.scale, r.file, r.url) for r in plan.released] == [
        (s, f"data/released/{AUTHORS[s].name}", AUTHORS[s].url) for s in (2, 3, 4)
    ]
    released = plan.group(RELEASED_GROUP)
    assert {(e.scale, e.dataset) for e in released} == {
        (s, d) for s in (2, 3, 4) for d in PAPER["evaluation"]["datasets"]
    }
    assert {e.label for e in released} == {"edsr_baseline-released"}
    for e in released:
        assert (e.run, e.arm, e.self_ensemble) == (None, "edsr_baseline", False)
        assert e.weights == f"runs/released/edsr_baseline_x{e.scale}.pt"  # what the DAG imports
        assert e.path == f"results/eval/edsr_baseline-released/x{e.scale}/{e.dataset}.json"
        assert not e.bicubic
    without = build_plan(PAPER, present=nowhere)
    assert plan.runs == without.runs  # nothing trained for them
    assert len(plan.evaluations) == len(without.evaluations) + 15


def test_a_file_that_is_not_there_is_left_out_and_the_rest_of_the_plan_kept():
    plan = build_plan(PAPER, present=lambda path: "_x3-" not in path)
    assert [r.scale for r in plan.missing_released()] == [3]
    assert {e.scale for e in plan.group(RELEASED_GROUP)} == {2, 4}
    missing = plan.missing_released()[0].missing
    assert missing == (
        "controls_released.edsr_baseline.x3: data/released/edsr_baseline_x3-abf2a44e.pt is not "
        "there: its evaluations are left out of the plan; download it from "
        "https://cv.snu.ac.kr/research/EDSR/models/edsr_baseline_x3-abf2a44e.pt"
    )


def test_only_the_scales_the_plan_evaluates_are_imported():
    params = with_released(DEMO, {"x2": "x2.pt", "x4": "x4.pt"})  # the demo: x2 only
    plan = build_plan(params, present=everywhere)
    assert [r.scale for r in plan.released] == [2]
    assert {(e.scale, e.dataset) for e in plan.group(RELEASED_GROUP)} == {
        (2, "photos"), (2, "Set5")
    }  # fmt: skip


@pytest.mark.parametrize(
    "released, key, problem",
    [
        ({"edsr_large": {"x2": "a.pt"}}, "controls_released", "unknown model 'edsr_large'"),
        ({"drn": {"x2": "a.pt"}}, "controls_released", "no released weights of drn"),
        ({"edsr_baseline": {"x8": "a.pt"}}, "controls_released.edsr_baseline.x8",
         "no release of edsr_baseline at x8: x2, x3, x4"),
        ({"edsr_baseline": {"2": "a.pt"}}, "controls_released.edsr_baseline", "does not match"),
        ({"edsr_baseline": {"x2": ""}}, "controls_released.edsr_baseline.x2", "non-empty"),
    ],
)  # fmt: skip
def test_a_bad_controls_released_names_its_key(released, key, problem):
    params = copy.deepcopy(PAPER)
    params["controls_released"] = released
    with pytest.raises(UsageError) as error:
        validate_params(params)
    assert f"params.yaml: {key}: " in str(error.value) and problem in str(error.value)


def test_drn_plan_warns_of_each_missing_file_and_dvc_yaml_leaves_it_out(tmp_path, monkeypatch,
                                                                        capsys):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PAPER, sort_keys=False))
    (tmp_path / "data/released").mkdir(parents=True)
    (tmp_path / "data/released" / AUTHORS[2].name).write_bytes(b"x")  # only x2 is there
    assert main(["plan"]) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if line.startswith("drn: warning:")]
    assert [w.split(":")[2].strip() for w in warnings] == [
        "controls_released.edsr_baseline.x3", "controls_released.edsr_baseline.x4"
    ]  # fmt: skip
    assert AUTHORS[4].url in warnings[1]
    assert "edsr_baseline-released" in captured.out and "(released weights)" in captured.out
    assert main(["plan", "--dvc"]) == 0
    dvc = yaml.safe_load(capsys.readouterr().out)["stages"]
    assert list(dvc["import_released"]["foreach"]) == ["edsr_baseline-x2"]
    assert dvc["import_released"]["foreach"]["edsr_baseline-x2"] == {
        "format": "edsr-pytorch", "file": f"data/released/{AUTHORS[2].name}", "scale": 2,
        "out": "runs/released/edsr_baseline_x2.pt",
    }  # fmt: skip
    evaluations = dvc["evaluate"]["foreach"]
    assert evaluations["edsr_baseline-released-x2-Set14"]["model"] == (
        "runs/released/edsr_baseline_x2.pt"
    )
    assert not any("-released-x3-" in key for key in evaluations)


# --- drn doctor ----------------------------------------------------------------------------------


def test_doctor_fails_a_missing_file_with_the_command_that_downloads_it():
    results = check_released(build_plan(PAPER, present=nowhere))
    assert [(r.name, r.status) for r in results] == [
        (f"data.released.edsr_baseline.x{s}", FAIL) for s in (2, 3, 4)
    ]
    assert results[0].found == (
        "data/released/edsr_baseline_x2-1bc95232.pt is not there: the evaluations of the "
        "authors' edsr_baseline_x2-1bc95232.pt are left out of the plan"
    )
    assert results[0].fix == (
        "curl -fL --create-dirs -o data/released/edsr_baseline_x2-1bc95232.pt "
        "https://cv.snu.ac.kr/research/EDSR/models/edsr_baseline_x2-1bc95232.pt"
    )


def test_drn_doctor_names_the_missing_file_of_the_demo_sized_plan(tmp_path, monkeypatch, capsys):
    params = demo_with_a_made_up_release(tmp_path)
    (tmp_path / "downloads/edsr_x2.pt").unlink()
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(checklist, "plan_cost", lambda params, plan: (None, "no projection"))
    assert main(["doctor", "--profile", str(REPO / "workflow/profiles/local")]) == 1
    out = capsys.readouterr().out
    assert "FAIL  data.released.edsr_baseline.x2" in out
    assert "downloads/edsr_x2.pt is not there" in out and AUTHORS[2].url in out
    assert [line for line in out.splitlines() if line.startswith("FAIL")] == [
        line for line in out.splitlines() if "data.released" in line and line.startswith("FAIL")
    ]  # the only failure


def test_doctor_checks_a_present_file_against_the_authors_digest(tmp_path, monkeypatch):
    theirs, other, damaged = (tmp_path / name for name in ("theirs.pt", "mine.pt",
                                                            AUTHORS[2].name))  # fmt: skip
    theirs.write_bytes(b"the authors' bytes")
    other.write_bytes(b"other bytes")
    damaged.write_bytes(b"truncated")
    sha256, size = file_digest(theirs)
    recorded = {2: Release(2, AUTHORS[2].name, AUTHORS[2].url, sha256, size)}
    monkeypatch.setattr(engine_releases, "releases", lambda variant: recorded)  # doctor's
    found = {}
    for path in (theirs, other, damaged):
        plan = build_plan(with_released(DEMO, {"x2": str(path)}), present=everywhere)
        [found[path.name]] = check_released(plan)
    assert found["theirs.pt"].status == OK
    assert "the authors' edsr_baseline_x2-1bc95232.pt (sha256 and size verified)" in (
        found["theirs.pt"].found
    )
    assert found["mine.pt"].status == WARN and "imported as it is" in found["mine.pt"].found
    assert found[AUTHORS[2].name].status == FAIL
    assert "modified or incomplete" in found[AUTHORS[2].name].found
    assert AUTHORS[2].url in found[AUTHORS[2].name].fix


# --- the DAG -------------------------------------------------------------------------------------


@slow
def test_the_dag_imports_the_file_and_evaluates_it_on_every_dataset(tmp_path):
    params = demo_with_a_made_up_release(tmp_path)
    workspace = project(tmp_path, params, dvc=False)
    (workspace / "dvc.yaml").write_text(dvc_yaml(params, build_plan(params, passed=None,
                                        present=lambda p: (workspace / p).is_file())))  # fmt: skip
    counts, jobs = dry_run(workspace)
    assert counts["import_released"] == 1
    commands = [command for command, _outputs in jobs]
    assert ("drn import edsr-pytorch downloads/edsr_x2.pt --scale 2 --out "
            "runs/released/edsr_baseline_x2.pt --track") in commands  # fmt: skip
    for dataset in ("photos", "Set5"):
        assert (f"drn evaluate --model runs/released/edsr_baseline_x2.pt --hr data/{dataset} "
                f"--scale 2 --json results/eval/edsr_baseline-released/x2/{dataset}.json"
                ) in commands  # fmt: skip
    assert dvc_stages(workspace) == [(command, outputs) for command, outputs in jobs]
    # their JSONs as targets: the two sources, the import, its two evaluations; nothing trained
    targets = [f"results/eval/edsr_baseline-released/x2/{d}.json" for d in ("photos", "Set5")]
    out = run(workspace, BIN / "snakemake", "--cores", "2", *targets)
    assert "5 of 5 steps (100%) done" in out and "rule train" not in out
    for target in targets:
        scores = json.loads((workspace / target).read_text())
        assert (scores["model"], scores["scale"], scores["self_ensemble"]) == (
            "edsr_baseline", 2, False)  # fmt: skip
        assert len(scores["images"]) == (2 if "photos" in target else 5)
    imported = load_checkpoint(workspace / "runs/released/edsr_baseline_x2.pt")
    assert imported["model"]["config"]["channels"] == 64  # its own sizes, not models.edsr_baseline
    assert imported["model"]["config"]["blocks"] == 16
    assert imported["origin"]["file"] == "edsr_x2.pt"
    log = (workspace / "results/logs/import/edsr_baseline_x2.log").read_text()
    assert "is not a known release of the EDSR authors" in log  # made up here: a warning
    assert "edsr_baseline x2 (C = 64, B = 16)" in log
    assert "MLflow: run " in log  # the demo tracks: the released weights' own MLflow run
    evaluated = workspace / "results/logs/evaluate/edsr_baseline-released_x2_Set5.log"
    assert "logged to run edsr_baseline-released_x2" in evaluated.read_text()
    # the report's Calibration: the released weights' row beside the published Set5 x2 cell,
    # before the trained control has run; a file that is not the authors' is not compared
    run(workspace, BIN / "drn", "report")
    report = (workspace / "reports/report.md").read_text()
    calibration = report.split("## Calibration", 1)[1].split("\n## ", 1)[0]
    set5 = json.loads((workspace / targets[1]).read_text())
    [row] = [line for line in calibration.splitlines() if line.startswith("| Set5 | x2 |")]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[2].startswith(f"{set5['psnr']:.2f}")  # the authors' weights, through ours
    assert cells[4] == "not run"  # the trained control
    assert cells[6].startswith("37.98")  # published (torchSR)
    assert cells[7] == "not the authors' file"  # made up here: compared with nothing
    assert ("**EDSR baseline, the authors' weights x2**: not compared: downloads/edsr_x2.pt is "
            "not the authors' edsr_baseline_x2-1bc95232.pt (sha256 ") in calibration  # fmt: skip
    assert "only that the pipeline imports and evaluates such a file" in calibration
