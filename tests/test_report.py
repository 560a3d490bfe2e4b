"""The paper-style report: built from a real (demo) run, every section, every cell a number or
"not run", the paper's numbers transcribed, and an HTML that a headless Chromium renders."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile

import numpy as np
import pytest
import yaml
from conftest import SET5
from PIL import Image
from pipeline import BIN, run

from drn.report import CHROMIUM_FLAGS
from drn.report.gather import PAPER_DATASETS, SCALES, Verdict, paper, parse_cell

SECTIONS = (
    "verdicts",
    "table3",
    "ablation-distillation",
    "ablation-loss",
    "fig2",
    "visual",
    "curves",
    "provenance",
    "other",
)
NUMBER_OR_NOT_RUN = re.compile(
    r"^(?:\*\*)?(\d+\.\d{2} / \d\.\d{4})(?:\*\*)?<br>|^not run<br>|^not planned<br>"
)
# the small demo's plan: DRN and DRN+, self-ensemble of DRN only
DEMO_COLUMNS = "| Dataset | Scale | Bicubic | DRN | DRN (self-ensemble) | DRN+ |"


@pytest.fixture(scope="module")
def report(demo_workspace):
    html = (demo_workspace / "reports/report.html").read_text()
    markdown = (demo_workspace / "reports/report.md").read_text()
    return html, markdown


def table3_rows(markdown):
    block = markdown.split("## Table 3")[1].split("Notes on the paper's numbers")[0]
    return [
        line
        for line in block.splitlines()
        if re.match(r"\| (Set5|Set14|B100|Urban100|Manga109) \|", line)
    ]


def test_the_report_of_the_demo_run_has_every_section(report):
    html, markdown = report
    for section in SECTIONS:
        assert f'id="{section}"' in html
    for heading in ("Verdicts", "Table 3", "Residual distilling blocks on and off (Table 2)",
                    "MAE (the paper's loss) against MSE", "Performance against model size",
                    "Visual comparisons", "Training curves", "Provenance",
                    "Other evaluations"):  # fmt: skip
        assert f"\n## {heading}" in markdown
    assert html.count("<img ") == 7  # two ablations, size, two visuals, two curve figures
    assert "Urban100 img_074, x4: not run (" in html  # the third visual's data is not there


def test_every_table3_cell_is_a_number_or_not_run(report):
    assert DEMO_COLUMNS in report[1]
    rows = table3_rows(report[1])
    assert len(rows) == len(PAPER_DATASETS) * len(SCALES)
    for row in rows:
        cells = [c.strip() for c in row.strip("| \n").split("|")[2:]]
        assert len(cells) == 4
        for cell in cells:
            assert NUMBER_OR_NOT_RUN.match(cell), cell


def test_the_demo_evaluations_are_shown_and_the_verdicts_say_not_planned(report):
    html, markdown = report
    assert "Other evaluations" in markdown and "| drn | x2 | photos | 2 |" in markdown
    assert "**DRN x2**: not planned" in markdown  # the demo evaluates no paper dataset
    assert "not comparable" in markdown  # the demo's ablation is not the paper's Set5 x3 100 epochs
    assert "Curves from" in html and "MLflow" in html
    provenance = markdown.split("## Provenance")[1]
    drn_x2 = next(line for line in provenance.splitlines() if line.startswith("| drn_x2 |"))
    cells = [c.strip() for c in drn_x2.strip("| ").split("|")]
    assert cells[1] == "main, ablation"  # also the distillation-drn and loss-l1 run (the same)
    assert cells[2] == "6" and cells[3].startswith("CPU (") and cells[4].endswith(" s")
    assert cells[5] == "none (CPU)" and len(cells[6].strip("`")) == 16 and len(cells[7]) == 32
    distillation = markdown.split("## Residual distilling")[1].split("\n## ")[0]
    assert "| drn | drn_x2 | " in distillation and "| drn_no_rd | drn_no_rd_x2 | " in distillation


def test_the_html_is_self_contained(report):
    html = report[0]
    sources = re.findall(r'\ssrc="([^"]*)"', html)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<script" not in html and "<link" not in html


def test_the_papers_numbers_are_transcribed_with_their_typos_noted():
    reference = paper()
    values = reference["table3"]["values"]
    assert len(values) == 10
    for method in values:
        for dataset in PAPER_DATASETS:
            for scale in SCALES:
                psnr, ssim = parse_cell(values[method][dataset][scale])
                assert 20 < psnr < 40 and 0.6 < ssim < 1
    assert values["DRN"]["Set5"][4] == "32.27/0.8964"
    assert values["DRN+"]["Manga109"][2] == "38.94/0.9779"
    assert values["Bicubic"]["Urban100"][3] == "24.46/0.7349"
    noted = {tuple(n["cell"]) for n in reference["table3"]["notes"]}
    assert {("SRMDNF", "Set5", 3), ("A+", "B100", 3), ("DRN", "Set14", 3)} <= noted
    assert reference["table2"]["psnr"] == {"RDBs": 33.98, "No RDBs": 33.83, "DBN+": 34.35}
    for entry in reference["parameters"]:
        assert entry["source"] and entry["count"] > 0


@pytest.mark.parametrize("method", ["DRCN", "LapSRN", "IDN", "SRMDNF"])
def test_computed_parameter_counts_add_up_from_their_layer_shapes(method):
    entry = next(e for e in paper()["parameters"] if e["method"] == method)
    weights_and_biases = sum(
        copies * (out * inputs * height * width + out * bias)
        for copies, out, inputs, height, width, bias in entry["layers"]
    )
    assert weights_and_biases + entry.get("extra", 0) == entry["count"]


@pytest.mark.parametrize(
    ("deltas", "verdict"),
    [
        ([], "not run"),
        ([0.01, -0.04], "reproduced: within 0.05 dB on all 2 sets (mean -0.01)"),
        ([-0.2, -0.1, 0.02], "below the paper: mean -0.09 dB over 3 sets (-0.20 to +0.02)"),
        ([0.3], "above the paper: mean +0.30 dB over 1 set (+0.30 to +0.30)"),
    ],
)
def test_verdicts(deltas, verdict):
    assert Verdict("DRN", 4, deltas, 0.05).text == verdict


def test_a_real_result_fills_its_cell_beside_the_papers(demo_workspace, tmp_path):
    workspace = tmp_path / "demo"
    shutil.copytree(demo_workspace, workspace, symlinks=True)
    shutil.copytree(SET5, workspace / "data/Set5")
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["sources"]["Set5"] = {"local": None}  # there already
    params["evaluation"]["datasets"].append("Set5")  # the plan asks for it: the report shows it
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(workspace, BIN / "drn", "evaluate", "--model", "bicubic", "--hr", "data/Set5",
        "--scale", "2", "--json", "results/eval/bicubic/x2/Set5.json")  # fmt: skip
    run(workspace, BIN / "drn", "report")
    rows = table3_rows((workspace / "reports/report.md").read_text())
    set5_x2 = [c.strip() for c in rows[0].strip("| \n").split("|")]
    assert set5_x2[:2] == ["Set5", "x2"]
    assert set5_x2[2] == "**33.67 / 0.9303**<br>33.66 / 0.9300<br>+0.01 / +0.0003"
    assert set5_x2[3].startswith("not run<br>38.06 / 0.9607")


def chromium():
    found = shutil.which("chromium")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the browser test: chromium is not installed")
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    return found


def test_the_html_loads_in_headless_chromium_without_console_errors(demo_workspace, tmp_path):
    browser = chromium()
    shot = tmp_path / "report.png"
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr",
             "--v=0", "--window-size=1280,2400", f"--screenshot={shot}",
             (demo_workspace / "reports/report.html").as_uri()],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if "CONSOLE" in line]
    assert not console, console
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (2400, 1280)
    assert pixels.std() > 20 and (pixels < 128).mean() > 0.01  # text, tables and figures, not blank


def test_the_report_prints_to_pdf(demo_workspace, tmp_path):
    chromium()
    workspace = tmp_path / "demo"
    shutil.copytree(demo_workspace, workspace, symlinks=True)
    out = run(workspace, BIN / "drn", "report", "--pdf")
    assert "reports/report.pdf" in out
    assert (workspace / "reports/report.pdf").read_bytes()[:5] == b"%PDF-"
