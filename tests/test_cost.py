"""The cost of the plan before launch (drn/pipeline/cost.py, drn plan --cost): a projection from the
GPU
throughput recorded in drn/reference/gpu_throughput.yaml, each figure the raw JSON it cites."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys

import pytest
import yaml
from conftest import REPO

from drn.cli import main
from drn.pipeline import cost
from drn.pipeline.params import load_params
from drn.pipeline.plan import build_plan

PAPER = load_params(REPO / "params.yaml")
DEMO = load_params(REPO / "demo/params.yaml")
ENTRIES = yaml.safe_load(cost.THROUGHPUT.read_text())["measurements"]


def _section(document: str, title: str) -> str:
    """The text of the Markdown section ``## title`` of ``document``, its lines joined."""
    text = (REPO / document).read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return " ".join(text[start : end if end > 0 else None].split())


def _cited(source: dict) -> tuple[object, dict]:
    """The raw value a throughput entry cites, and the JSON object (row or file) holding it."""
    raw = json.loads((REPO / source["file"]).read_text())
    if "row" in source:
        rows = [r for r in raw["rows"] if all(r.get(k) == v for k, v in source["row"].items())]
        assert len(rows) == 1, f"{source}: {len(rows)} matching rows"
        return rows[0][source["key"]], rows[0]
    value = raw
    for key in source["key"].split("."):
        value = value[key]
    return value, raw


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["id"] for e in ENTRIES])
def test_every_figure_of_the_throughput_file_is_the_raw_json_it_cites(entry):
    figures = [k for k in ("iterations_per_s", "ms_per_step") if k in entry]
    assert len(figures) == 1, f"{entry['id']}: one of iterations_per_s, ms_per_step"
    value, holder = _cited(entry["source"])
    assert entry[figures[0]] == value  # exactly: transcribed, not rounded
    assert (figures[0] == "ms_per_step") == (entry["source"].get("key") == "ms")
    assert holder.get("scale", entry["scale"]) == entry["scale"]
    assert holder.get("variant", "drn") == entry["variant"]  # the step benchmark's default
    raw = json.loads((REPO / entry["source"]["file"]).read_text())
    assert raw.get("device", entry["card"]) == entry["card"]
    # card, date and command as the document's section states them; the paper's batch and patch
    section = _section(entry["document"], entry["section"])
    assert entry["card"] in section and entry["date"] in section
    assert entry["command"] in section
    assert entry["measured"] in (cost.ENGINE, cost.MODEL_STEP)
    assert (entry["batch"], entry["patch"]) == (PAPER["train"]["batch"], PAPER["train"]["patch"])


def test_a_measured_run_costs_its_iterations_at_the_measured_rate_times_its_gpus():
    plan = build_plan(PAPER)
    drn_x2 = cost.estimate(PAPER, plan.run("drn_x2"))
    assert drn_x2.measured and drn_x2.kind == cost.MEASURED
    assert drn_x2.basis.startswith("measured: ") and "[drn_x2_engine]" in drn_x2.basis
    assert drn_x2.iterations == 800 * 1000 and drn_x2.iterations_per_s == 63.906
    assert drn_x2.gpus == 1
    assert drn_x2.gpu_hours == pytest.approx(800_000 / 63.906 / 3600)
    plus = cost.estimate(PAPER, plan.run("drn_plus_x2"))
    assert plus.measured and "model step only" in plus.basis
    assert plus.gpu_hours == pytest.approx(300_000 * 39.59833526611328 / 1000 / 3600)

    four = copy.deepcopy(PAPER)
    four["resources"]["train"]["gpu"] = 4  # not assumed faster: four times the GPU-hours
    on_four = cost.estimate(four, build_plan(four).run("drn_x2"))
    assert on_four.hours == pytest.approx(drn_x2.hours)
    assert on_four.gpu_hours == pytest.approx(4 * drn_x2.gpu_hours)
    assert any("not assumed faster" in note for note in cost.estimate_plan(four).notes)


def test_a_run_that_was_not_measured_says_it_is_derived_and_how():
    costs = {c.run: c for c in cost.estimate_plan(PAPER).runs}
    drn_x3 = costs["drn_x3"]  # the engine's rate at x2
    assert not drn_x3.measured and drn_x3.kind == cost.FROM_SCALE
    assert drn_x3.basis.startswith("derived: drn x2") and "x3 not measured" in drn_x3.basis
    assert drn_x3.iterations_per_s == 63.906
    drn_x4 = costs["drn_x4"]  # the engine at x2 rather than the model step alone at x4
    assert drn_x4.kind == cost.FROM_SCALE and "[drn_x4_model_step]" in drn_x4.basis
    plus_x3 = costs["drn_plus_x3"]  # between x2 and x4: the slower
    assert plus_x3.kind == cost.FROM_SCALE and "slower" in plus_x3.basis
    assert plus_x3.iterations_per_s == pytest.approx(1000 / 41.894351959228516)
    no_rd = costs["drn_no_rd_x3_e100"]  # never measured: drn's rate scaled by the FLOPs ratio
    assert no_rd.kind == cost.FROM_FLOPS and no_rd.basis.startswith("derived: drn x3's rate")
    ratio = float(re.search(r"\) x (\d+\.\d+), the ratio of training FLOPs", no_rd.basis)[1])
    assert 1 < ratio < 1.2  # no distillation: somewhat less arithmetic than drn
    assert no_rd.iterations_per_s == pytest.approx(63.906 * ratio, rel=1e-3)

    big_batch = copy.deepcopy(PAPER)  # measured variant, other batch: FLOPs, linear in batch
    big_batch["train"]["batch"] = 32
    derived = cost.estimate(big_batch, build_plan(big_batch).run("drn_x2"))
    assert derived.kind == cost.FROM_FLOPS and "batch 32" in derived.basis
    assert derived.iterations_per_s == pytest.approx(63.906 / 2)
    demo = cost.estimate_plan(DEMO)  # demo sizes: FLOPs-derived; CPU runs: no GPU-hours
    assert all(c.kind == cost.FROM_FLOPS and "channels=32" in c.basis for c in demo.runs)
    assert demo.total.gpu_hours == 0 and any("train on CPUs" in n for n in demo.notes)


def test_drn_plan_cost_prints_every_run_its_basis_and_a_total_labelled_a_projection(capsys):
    params = str(REPO / "params.yaml")
    assert main(["plan", "--params", params, "--cost"]) == 0
    out = capsys.readouterr().out
    projection = cost.estimate_plan(PAPER)
    for run in projection.runs:
        assert re.search(rf"│ {run.run} +│", out), run.run
        assert f"  {run.run}: {run.basis}" in out
    total = f"Total: {projection.total.gpu_hours:.2f} GPU-hours"
    assert total in out and out.rstrip().endswith("not a measurement.")
    assert 'NVIDIA H100 80GB HBM3, 2026-11-26; docs/PERFORMANCE.md, "The training engine' in out
    assert "docs/perf/gpu_train_h100.json train.steady_it_per_s" in out

    assert main(["plan", "--params", params, "--cost", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["projection"] == cost.PROJECTION
    trained = [r.name for r in build_plan(PAPER).trained_runs()]  # milestones cost nothing
    assert [r["run"] for r in printed["runs"]] == trained and "drn_x3_e100" not in trained
    assert printed["total"]["gpu_hours"] == pytest.approx(
        sum(r["gpu_hours"] for r in printed["runs"])
    )
    assert {s["id"] for s in printed["sources"]} >= {"drn_x2_engine", "drn_plus_x2_model_step"}

    assert main(["plan", "--params", params, "--cost", "--dvc"]) == 2
    assert "--cost" in capsys.readouterr().err


NUMBERS = {10: "ten", 11: "eleven", 13: "thirteen"}


def test_the_paper_config_comes_to_the_projection_performance_md_documents():
    total = cost.estimate_plan(PAPER).total
    documented = re.search(r"therefore come to roughly (\d+)\s+H100-hours",
                           (REPO / "docs/PERFORMANCE.md").read_text())  # fmt: skip
    assert documented, "docs/PERFORMANCE.md: the projection's sentence moved"
    assert round(total.gpu_hours_by_role["main"]) == int(documented[1])  # the six main runs: 21
    assert 0 < total.gpu_hours_by_role["ablation"] < 1.5  # two runs of 100 epochs (3 milestones)
    assert 0 < total.gpu_hours_by_role["control"] < 3  # three small EDSRs of 300 epochs
    readme = re.search(r"the paper's (\w+) runs come to about (\d+) H100-hours",
                       " ".join((REPO / "README.md").read_text().split()))  # fmt: skip
    assert readme and readme[1] == "eleven" == NUMBERS[total.runs]
    assert int(readme[2]) == round(total.gpu_hours) == 24


def test_measured_runs_cost_nothing_to_import():
    """torch is imported only where a rate is derived from FLOPs."""
    code = (
        "import sys; from drn.pipeline.params import load_params; "
        "from drn.pipeline.plan import build_plan; "
        "from drn.pipeline.cost import estimate; p = load_params('params.yaml'); "
        "[estimate(p, r) for r in build_plan(p).runs if r.variant in ('drn', 'drn_plus')]; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
