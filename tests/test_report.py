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
from PIL import Image
from pipeline import BIN, run

from drn.report.reference import PAPER_DATASETS, SCALES, paper, parse_cell
from drn.report.render import CHROMIUM_FLAGS
from drn.report.stats import Claim, Verdict, judgement, paired_interval, seeds_of, sentence

SECTIONS = (
    "verdicts",
    "table3",
    "calibration",
    "ablation-distillation",
    "ablation-loss",
    "milestones",
    "fig2",
    "visual",
    "curves",
    "provenance",
    "other",
)
NUMBER_OR_NOT_RUN = re.compile(
    r"^(?:\*\*)?(\d+\.\d{2}(?: ± (?:\d+\.\d{2}|-))? / \d\.\d{4}(?: \(n = \d+(?: of \d+)?\))?)"
    r"(?:\*\*)?<br>|^not run<br>|^not planned<br>"
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
    for heading in ("Verdicts", "Table 3", "Calibration",
                    "Residual distilling blocks on and off (Table 2)",
                    "MAE (the paper's loss) against MSE", "Milestones",
                    "Performance against model size",
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


def test_the_demo_evaluations_are_shown_and_its_runs_labelled_demo_scale(report):
    html, markdown = report
    assert "Other evaluations" in markdown and "| drn | x2 | photos | 2 |" in markdown
    assert "| drn_s1 | x2 | photos | 2 |" in markdown  # drn's second seed
    assert re.search(r"\*\*DRN x3\*\*: (below|above) the paper", markdown)
    assert "**DRN x4**: not planned" in markdown  # the small demo is x2 and x3
    assert "not comparable" in markdown  # the demo's ablation is not the paper's Set5 x3 100 epochs
    verdicts = section_of(markdown, "Verdicts")
    assert "**This is a demo-scale run (" in verdicts and "iterations of batch 4" in verdicts
    assert "Curves from" in html and "MLflow" in html
    provenance = markdown.split("## Provenance")[1]
    drn_x2 = next(line for line in provenance.splitlines() if line.startswith("| drn_x2 |"))
    cells = [c.strip() for c in drn_x2.strip("| ").split("|")]
    assert cells[1] == "main"  # distillation-drn and loss-l1 are its milestone at step 3
    assert cells[2] == "6" and cells[3].startswith("CPU (") and cells[4].endswith(" s")
    assert cells[5] == "none (CPU)" and len(cells[6].strip("`")) == 16 and len(cells[7]) == 32
    assert "| drn_x2_s1 | main |" in provenance
    assert "| drn_x2_e0.003 | ablation | 3 | a milestone: drn_x2's checkpoint" in provenance
    distillation = section_of(markdown, "Residual distilling blocks on and off (Table 2)")
    assert "| drn | drn_x2_e0.003, drn_x2_e0.003_s1 | " in distillation
    assert "| drn_no_rd | drn_no_rd_x2_e0.003 | " in distillation
    assert "| drn_plus | drn_plus_x2_e0.003 | " in distillation  # beside the paper's DBN+
    milestones = section_of(markdown, "Milestones")
    assert "**This is a demo-scale run (" in milestones
    verdict = r"\| (on course|behind) \(demo scale\) \|$"  # photos: bicubic's floor, no paper's
    row = r"^\| distillation-drn \| drn_x2_e0\.003 \| drn_x2 \| 3 \| photos x2 \| \d+\.\d\d \| "
    assert re.search(row + r"\d+\.\d\d, bicubic \(no published number at this point\) \| "
                     r"[+-]\d+\.\d\d " + verdict, milestones, re.M), milestones  # fmt: skip


def section_of(markdown, heading):
    return markdown.split(f"\n## {heading}")[1].split("\n## ")[0]


PAIRED = re.compile(
    r"^\| (\S+ - \S+) \| (\d+) \((\d+) images? x (\d+) seeds?\) \| ([+-]\d\.\d\d) \| "
    r"([+-]\d+\.\d\d) to ([+-]\d+\.\d\d) \| (BCa|percentile \(BCa degenerate\)) \| (.+) \|$",
    re.M,
)
JUDGEMENT = re.compile(
    r"^- \S+ - \S+: (supported|not supported|not resolved by this data) \(", re.M
)


def test_the_demo_report_has_set5_x2_over_two_seeds_with_a_verdict(report):
    markdown = report[1]
    set5_x2 = [c.strip() for c in table3_rows(markdown)[0].strip("| \n").split("|")]
    assert set5_x2[:2] == ["Set5", "x2"]
    bicubic = r"(\*\*)?33\.67 / 0\.9303(\*\*)?<br>33\.66 / 0\.9300<br>\+0\.01 / \+0\.0003"
    assert re.fullmatch(bicubic, set5_x2[2])  # on the five images of Set5; not trained: no seeds
    drn = re.fullmatch(
        r"(\*\*)?(\d+\.\d\d) ± (\d+\.\d\d) / (0\.\d{4}) \(n = 2\)(\*\*)?<br>"
        r"38\.06 / 0\.9607<br>([+-]\d+\.\d\d) / [+-]0\.\d{4}",
        set5_x2[3],
    )
    assert drn, set5_x2[3]  # DRN: mean ± sd over its two seeds, the paper's, the difference
    assert abs(float(drn[2]) - 38.06 - float(drn[6])) < 0.006
    verdict = re.search(r"^- \*\*DRN x2\*\*: (.+)$", markdown, re.M)[1]
    pattern = r"(below|above) the paper: mean [+-]\d+\.\d\d dB over 1 set \(.*; n = 2 seeds\)"
    assert re.fullmatch(pattern, verdict), verdict


def test_the_demo_ablations_report_paired_intervals(report):
    markdown = report[1]
    for heading, pairs in (
        ("Residual distilling blocks on and off (Table 2)",
         [("drn", "drn_no_rd", 2, 1), ("drn", "drn_plus", 2, 1)]),  # one seed of each but drn
        ("MAE (the paper's loss) against MSE", [("l1", "l2", 2, 2)]),
    ):  # fmt: skip
        block = section_of(markdown, heading)
        assert "**This is a demo-scale run (" in block
        rows = PAIRED.findall(block)
        assert len(rows) == len(pairs)
        for row, (first, other, images, seeds) in zip(rows, pairs, strict=True):
            assert row[0] == f"{first} - {other}"
            assert (int(row[1]), int(row[2]), int(row[3])) == (images * seeds, images, seeds)
            assert float(row[5]) <= float(row[4]) <= float(row[6])
        said = JUDGEMENT.findall(block)  # one sentence each: the paper claims a direction
        assert len(said) == len(pairs)
        assert set(said) <= {"supported", "not supported", "not resolved by this data"}
    distillation = section_of(markdown, "Residual distilling blocks on and off (Table 2)")
    assert "+0.15 dB (Table 2: RDBs 33.98 - No RDBs 33.83)" in distillation
    assert "-0.37 dB (Table 2: RDBs 33.98 - DBN+ 34.35)" in distillation  # DBN+: read as DRN+
    loss = section_of(markdown, "MAE (the paper's loss) against MSE")
    assert (
        "direction only, first arm better; no size" in loss and "the paper gives no size." in loss
    )


def test_the_demo_report_calibrates_with_a_demo_scale_control(report):
    html, markdown = report
    block = section_of(markdown, "Calibration")
    assert "### EDSR baseline (`edsr_baseline`)" in block
    assert "**This is a demo-scale run (6 iterations of batch 4; the published recipe: " in block
    rows = [line for line in block.splitlines() if re.match(r"\| (Set5|photos) \| x[23] \|", line)]
    assert len(rows) == 4  # Set5 and photos at x2 and x3
    set5_x2 = [c.strip() for c in rows[0].strip("| ").split("|")]
    assert set5_x2[:2] == ["Set5", "x2"] and set5_x2[6] == "37.98 / 0.9604"
    assert set5_x2[2:4] == ["not planned", "-"]  # the demo imports no released weights
    assert re.fullmatch(r"\d+\.\d\d ± - / 0\.\d{4} \(n = 1\)", set5_x2[4])
    assert set5_x2[7] == "not planned"
    assert set5_x2[8] in ("below", "above")  # a tiny model after 6 iterations
    counts = r"\| x2 \| [\d,]+ \| 1\.37M \| differs \(params\.yaml models\.edsr_baseline"
    assert re.search(counts, block)  # the demo's control is tiny
    assert "This is a demo-scale run (6 iterations of batch 4" in block.split("| x3 |")[-1]
    assert "is off its published numbers" in block
    assert "The authors' released weights of EDSR baseline are not in this plan" in block
    assert 'id="calibration-edsr_baseline"' in html


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
    ("deltas", "spreads", "verdict"),
    [
        ([], None, "not run"),
        ([0.01, -0.04], None, "reproduced: within 0.05 dB on all 2 sets (mean -0.01; n = 1 seed)"),
        ([-0.2, -0.1, 0.02], None,
         "below the paper: mean -0.09 dB over 3 sets (-0.20 to +0.02; n = 1 seed)"),
        # one set: no range over sets; its seeds' range where there are several seeds
        ([0.3], None, "above the paper: mean +0.30 dB over 1 set (n = 1 seed)"),
        ([-0.3], [(-0.35, -0.25)],
         "below the paper: mean -0.30 dB over 1 set (seeds' range -0.35 to -0.25; n = 2 seeds)"),
        # two seeds: -0.25 and +0.05 from the paper's value, which lies between them
        ([-0.1], [(-0.25, 0.05)],
         "inconclusive: mean -0.10 dB over 1 set, outside 0.05 dB, but the paper's value lies "
         "within our seeds' range wherever it is outside (n = 2 seeds)"),
        # ... not where another set is outside the tolerance and its seeds all below the paper's
        ([-0.1, -0.2], [(-0.25, 0.05), (-0.3, -0.1)],
         "below the paper: mean -0.15 dB over 2 sets (-0.20 to -0.10; n = 2 seeds)"),
        ([0.03, 0.2], [(0.0, 0.06), (0.1, 0.3)],
         "above the paper: mean +0.12 dB over 2 sets (+0.03 to +0.20; n = 2 seeds)"),
        # a set within the tolerance needs no spread
        ([0.03, -0.3], [(0.0, 0.06), (-0.6, 0.0)],
         "inconclusive: mean -0.14 dB over 2 sets, outside 0.05 dB, but the paper's value lies "
         "within our seeds' range wherever it is outside (n = 2 seeds)"),
    ],
)  # fmt: skip
def test_verdicts(deltas, spreads, verdict):
    seeds = None if spreads is None else [2] * len(deltas)
    assert Verdict("DRN", 4, deltas, 0.05, True, spreads, seeds).text == verdict


def test_two_seeds_give_a_mean_a_sample_sd_and_n():
    two = seeds_of([(37.66, 0.9566), (37.70, 0.9570)])
    assert two.n == 2 and two.mean == pytest.approx((37.68, 0.9568))
    assert two.sd == pytest.approx(0.04 / 2**0.5)  # n - 1 in the denominator
    assert (two.sd_text, two.n_text, two.spread) == ("0.03", "n = 2", (37.66, 37.70))
    assert two.contains(37.69) and not two.contains(37.71)
    one = seeds_of([(37.66, 0.9566), None])  # the second seed not run yet
    assert (one.sd, one.sd_text, one.n_text, one.spread) == (None, "-", "n = 1 of 2", None)
    assert not one.contains(37.66)  # one seed has no spread
    assert seeds_of([None, None]) is None


RDBS = Claim(1, 0.15, "Table 2")


def test_an_arm_better_by_0_3_db_on_every_image_supports_the_claim():
    # arm A = arm B + 0.3 dB on every image: every paired difference A - B is 0.3
    found = paired_interval([0.3] * 5)
    assert found.n == 5 and found.method == "percentile (BCa degenerate)"
    assert (found.mean, found.low, found.high) == pytest.approx((0.3, 0.3, 0.3))
    assert judgement(found, RDBS) == "supported"
    said = sentence("drn", "drn_no_rd", found, RDBS)
    assert said.startswith(
        "drn - drn_no_rd: supported (the interval excludes 0 on the paper's side"
    )
    assert said.endswith("the paper's +0.15 dB lies outside the interval.")
    assert judgement(paired_interval([-0.3] * 5), RDBS) == "not supported"


def test_a_noisy_difference_has_a_reproducible_bca_interval_around_it():
    rng = np.random.default_rng(0)
    differences = list(0.3 + rng.normal(0, 0.05, 40))
    found = paired_interval(differences, seeds=2)
    assert found.method == "BCa" and not found.rough
    assert 0.25 < found.low < np.mean(differences) < found.high < 0.35
    assert paired_interval(differences, seeds=2) == found  # a fixed seed: the same report
    assert judgement(found, RDBS) == "supported"
    assert "lies outside" in sentence("a", "b", found, RDBS)
    assert "lies inside" in sentence("a", "b", found, Claim(1, 0.3, "x"))


def test_equal_arms_do_not_resolve_the_claim():
    found = paired_interval([0.0] * 5)
    assert (found.low, found.high) == (0.0, 0.0)
    assert judgement(found, RDBS) == "not resolved by this data"
    symmetric = paired_interval([-0.2, 0.0, 0.2, -0.2, 0.0, 0.2])
    assert symmetric.low < 0 < symmetric.high and symmetric.rough
    said = sentence("l1", "l2", symmetric, Claim(1, None, "Sec. 2.5"))
    assert "l1 - l2: not resolved by this data (the interval contains 0" in said
    assert said.endswith("the paper gives no size.")


def test_tiny_samples_are_handled():
    assert paired_interval([]) is None
    assert "not run" in sentence("a", "b", None, RDBS)
    one = paired_interval([0.4])
    assert (one.n, one.low, one.high, one.method) == (1, None, None, "none (one pair)")
    assert judgement(one, RDBS) == "not resolved by this data"
    assert "no interval from one pair" in sentence("a", "b", one, RDBS)
    two = paired_interval([0.3, 0.5])
    assert two.low <= 0.4 <= two.high and two.rough
    assert "the paper makes no claim about it" in sentence("a", "b", two, None)
    assert judgement(two, Claim(0, None, "x")) is None  # no direction claimed


def test_the_papers_loss_claim_is_a_direction_without_a_size():
    claim = paper()["claims"]["loss_comparison"]
    assert (claim["better"], claim["than"], claim["difference_db"]) == ("l1", "l2", None)
    assert "so we optimize the model with MAE" in claim["text"]


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
