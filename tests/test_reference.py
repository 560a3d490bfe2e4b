"""drn/reference/edsr_baseline.yaml: the control's published numbers, well formed and consistent."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO

from drn.models import build_model, variants
from drn.models.complexity import trainable_parameters
from drn.protocol.metrics import luma, psnr, shave
from drn.protocol.scoring import score_image

EDSR = yaml.safe_load((REPO / "drn/reference/edsr_baseline.yaml").read_text())
BENCHMARKS = EDSR["benchmarks"]
DATASETS = {"Set5", "Set14", "B100", "Urban100", "Manga109"}
CELL = re.compile(r"^(\d{2}\.\d{2})/(0\.\d{3,5})$")  # "PSNR/SSIM" as printed


def parse(printed: str) -> tuple[float, float]:
    match = CELL.match(printed)
    assert match, f"not PSNR/SSIM: {printed!r}"
    psnr, ssim = float(match[1]), float(match[2])
    assert 20 < psnr < 45 and 0.5 < ssim < 1, printed
    return psnr, ssim


def tables():
    """Every table of the file: the values and each cross-check, by name."""
    return {"values": BENCHMARKS["values"], **BENCHMARKS["cross_checks"]}


def test_names_a_registered_model_and_known_sources():
    assert EDSR["model"] in variants()
    sources = set(EDSR["sources"])
    assert BENCHMARKS["primary"] in sources
    assert set(BENCHMARKS["cross_checks"]) <= sources
    assert {entry["source"] for entry in BENCHMARKS["from_other_sources"]} <= sources


@pytest.mark.parametrize("name", ["values", "srtransgan", "mclir"])
def test_every_value_is_psnr_over_ssim_at_a_known_dataset_and_scale(name):
    table = tables()[name]
    assert table and set(table) <= DATASETS
    for cells in table.values():
        assert cells and set(cells) <= {2, 3, 4}
        for printed in cells.values():
            parse(printed)


def test_the_primary_source_has_every_cell_but_manga109_x2_and_x3():
    values = BENCHMARKS["values"]
    cells = {(dataset, scale) for dataset, row in values.items() for scale in row}
    expected = {(d, s) for d in DATASETS for s in (2, 3, 4)} - {("Manga109", 2), ("Manga109", 3)}
    assert cells == expected
    borrowed = [tuple(entry["cell"]) for entry in BENCHMARKS["from_other_sources"]]
    assert borrowed == [("Manga109", 4)]
    for dataset, scale in borrowed:  # a borrowed cell is its source's value
        entry = next(e for e in BENCHMARKS["from_other_sources"] if e["cell"] == [dataset, scale])
        assert values[dataset][scale] == BENCHMARKS["cross_checks"][entry["source"]][dataset][scale]


def test_notes_quote_the_printed_cells():
    for note in BENCHMARKS["notes"]:
        dataset, scale = note["cell"]
        assert BENCHMARKS["values"][dataset][scale] == note["printed"]


def test_cross_checks_agree_with_the_primary_values():
    """Transcription check: the literature's copies within 0.01 dB and 0.001 SSIM of torchSR's."""
    values = BENCHMARKS["values"]
    compared = 0
    for name, table in BENCHMARKS["cross_checks"].items():
        for dataset, cells in table.items():
            for scale, printed in cells.items():
                psnr, ssim = parse(printed)
                ours_psnr, ours_ssim = parse(values[dataset][scale])
                assert abs(psnr - ours_psnr) <= 0.0100001, (name, dataset, scale)
                assert abs(ssim - ours_ssim) <= 0.001, (name, dataset, scale)
                compared += 1
    assert compared == 12


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_published_parameter_counts_round_to_ours(scale):
    printed = EDSR["parameters"]["printed"][scale]
    assert printed.endswith("M")
    with torch.device("meta"):
        ours = trainable_parameters(build_model(EDSR["model"], scale))
    assert f"{ours / 1e6:.2f}M" == printed
    if scale == 4:  # the paper's Table 1 gives one count; x4's rounds to it
        assert f"{ours / 1e6:.1f}M" == EDSR["parameters"]["paper"]["printed"]


def test_published_training_is_the_recipe_of_params_yaml():
    """Our control trains with EDSR-PyTorch's published recipe (the differences are written)."""
    published = EDSR["training"]["published"]
    train = yaml.safe_load((REPO / "params.yaml").read_text())["train"]
    assert train["epochs"][EDSR["model"]] == published["epochs"] == 300
    assert train["iterations_per_epoch"] == published["iterations_per_epoch"]
    assert (train["batch"], train["patch"]) == (published["batch"], published["patch"])
    assert train["decay"] == published["decay"]
    assert train["optimizer"]["lr"] == 1e-4 and train["loss"] == published["loss"].lower()


# torchSR's Y of an RGB image (its --eval-luminance: no +16 offset), on a gray image opened as RGB
TORCHSR_Y = (65.738, 129.057, 25.064)


def test_the_set14_offset_is_its_grayscale_image_scored_as_rgb():
    """The recorded offset is the computation: torchSR's Y of a gray image opened as RGB is
    219.859 / 256 of the gray value, which scales every error, so that image's PSNR is
    20 log10(256 / 219.859) dB higher than ours; one image of Set14's 14 on the mean."""
    (offset,) = BENCHMARKS["protocol_offsets"]
    assert [tuple(cell) for cell in offset["cells"]] == [("Set14", 2), ("Set14", 3), ("Set14", 4)]
    per_image = 20 * math.log10(256 / sum(TORCHSR_Y))
    assert round(per_image, 2) == 1.32 and round(per_image / 14, 3) == offset["psnr_db"] == 0.094
    for printed in ("0.8588", "+1.32 dB", "20 log10(256 / 219.859)", "+0.094 dB"):
        assert printed in offset["why"]
    assert f"{sum(TORCHSR_Y) / 256:.4f}" == "0.8588"


def test_scoring_a_gray_image_as_rgb_adds_20_log10_256_over_219_859_db():
    rng = np.random.default_rng(14)
    hr = rng.integers(0, 256, (24, 20), dtype=np.uint8)
    sr = np.clip(hr + rng.normal(0, 6, hr.shape), 0, 255).round().astype(np.uint8)
    ours = psnr(shave(luma(sr), 2), shave(luma(hr), 2))  # a gray image as score_image takes it
    assert ours == score_image(sr, hr, 2)[0]

    def theirs_y(gray):  # opened as RGB: three equal channels, then torchSR's Y, not rounded
        rgb = np.repeat(gray[:, :, None].astype(np.float64), 3, axis=2)
        return rgb @ np.array(TORCHSR_Y) / 256

    theirs = psnr(shave(theirs_y(sr), 2), shave(theirs_y(hr), 2))
    assert theirs - ours == pytest.approx(20 * math.log10(256 / 219.859), abs=1e-9)


def test_protocol_offset_reads_the_reference_per_cell():
    from drn.report.reference import control_reference, protocol_offset

    published = control_reference("edsr_baseline")
    for scale in (2, 3, 4):
        offset, why = protocol_offset(published, "Set14", scale)
        assert offset == 0.094 and why.startswith("torchSR opens every image as RGB, so Set14's")
        assert "  " not in why and "\n" not in why
    assert protocol_offset(published, "Set5", 2) is None
    assert protocol_offset({}, "Set14", 2) is None
