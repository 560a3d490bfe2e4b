"""`drn import edsr-pytorch FILE --scale S`: the EDSR authors' weights as a drn checkpoint.

The files here are made by the tests in EDSR-PyTorch's layout (the module names and MeanShift
layers of its src/model/edsr.py and common.py, random weights, saved with torch.save); the
authors' real releases are never downloaded. What the import promises: our evaluator, run on
the imported checkpoint, makes the SR images EDSR-PyTorch's own forward pass makes (its 0-255
pixels, MeanShift convolutions and quantisation), within one 8-bit level; a known release is
verified by its sha256 and size; anything our model would compute differently is one line
naming the file or the tensor.
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO, SET5
from PIL import Image
from torch import nn

from drn.cli import main
from drn.core.images import read_image
from drn.engine import edsr_pytorch
from drn.engine.checkpoint import load_checkpoint, save_checkpoint
from drn.engine.releases import Release, file_digest, release_format, releases
from drn.models import build_model
from drn.protocol.scoring import lr_of

DIV2K_MEAN = (0.4488, 0.4371, 0.4040)  # EDSR-PyTorch's MeanShift default, rgb_range 255


# --- EDSR-PyTorch's model, as its src/model/edsr.py and common.py compute it ----------------


class MeanShift(nn.Conv2d):
    """A fixed 1x1 conv: x + sign * rgb_range * mean (rgb_std 1)."""

    def __init__(self, sign: float, rgb_range: float = 255.0, mean=DIV2K_MEAN):
        super().__init__(3, 3, kernel_size=1)
        self.weight.data = torch.eye(3).view(3, 3, 1, 1)
        self.bias.data = sign * rgb_range * torch.tensor(mean)
        self.requires_grad_(False)


def conv(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, padding=1)


class AuthorsResBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(conv(channels, channels), nn.ReLU(True), conv(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x  # res_scale 1


def authors_upsampler(channels: int, scale: int) -> nn.Sequential:
    """x3: one conv to 9C and PixelShuffle(3); x2, x4: a conv to 4C and PixelShuffle(2) each."""
    stages = [3] if scale == 3 else [2] * (scale.bit_length() - 1)
    layers: list[nn.Module] = []
    for factor in stages:
        layers += [conv(channels, factor * factor * channels), nn.PixelShuffle(factor)]
    return nn.Sequential(*layers)


class AuthorsEDSR(nn.Module):
    """EDSR-PyTorch's EDSR with the baseline's options (n_feats 64, n_resblocks 16)."""

    def __init__(self, scale: int, channels: int = 64, blocks: int = 16):
        super().__init__()
        self.sub_mean, self.add_mean = MeanShift(-1), MeanShift(+1)
        self.head = nn.Sequential(conv(3, channels))
        self.body = nn.Sequential(
            *(AuthorsResBlock(channels) for _ in range(blocks)), conv(channels, channels)
        )
        self.tail = nn.Sequential(authors_upsampler(channels, scale), conv(channels, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pixels 0-255 in and out
        x = self.head(self.sub_mean(x))
        return self.add_mean(self.tail(self.body(x) + x))


def quantize(sr: torch.Tensor) -> np.ndarray:
    """EDSR-PyTorch's utility.quantize at rgb_range 255, then the uint8 image it saves."""
    pixels = sr.clamp(0, 255).round()[0].permute(1, 2, 0)
    return pixels.to(torch.uint8).numpy()


@torch.no_grad()
def authors_sr(model: AuthorsEDSR, lr: np.ndarray, self_ensemble: bool = False) -> np.ndarray:
    """The SR image EDSR-PyTorch's test loop saves for ``lr`` (uint8): the model on the 0-255
    pixels, with ``self_ensemble`` its forward_x8 (8 flips/transposes, outputs averaged), then
    quantised."""
    x = torch.from_numpy(lr).permute(2, 0, 1).unsqueeze(0).float()
    if not self_ensemble:
        return quantize(model(x))
    outputs = []
    for transpose in (False, True):
        for dims in ((), (-1,), (-2,), (-2, -1)):
            y = x.transpose(-2, -1) if transpose else x
            y = model(y.flip(dims) if dims else y)
            y = y.flip(dims) if dims else y
            outputs.append(y.transpose(-2, -1) if transpose else y)
    return quantize(torch.cat(outputs).mean(0, keepdim=True))


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def authors():
    """EDSR-PyTorch models of random weights, by scale."""
    found = {}
    for scale in (2, 3, 4):
        torch.manual_seed(scale)
        found[scale] = AuthorsEDSR(scale).eval()
    return found


def save_state(path: Path, state: dict, legacy: bool = False) -> Path:
    """torch.save a state dict; ``legacy``: the pre-1.6 format the authors' 2018 files have."""
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    return path


@pytest.fixture
def release_file(tmp_path, authors):
    """A file of EDSR-PyTorch x2 weights (their layout), by the name of no known release."""
    return save_state(tmp_path / "edsr_baseline_x2-mine.pt", authors[2].state_dict())


@pytest.fixture
def hr_dir(tmp_path):
    """Two small HR images (72x60: a multiple of 2, 3 and 4) cut from Set5."""
    folder = tmp_path / "hr"
    folder.mkdir()
    for name in ("bird", "butterfly"):
        crop = read_image(SET5 / f"{name}.png")[60:120, 40:112]
        Image.fromarray(crop).save(folder / f"{name}.png")
    return folder


def drn(*args: object) -> int:
    return main([str(a) for a in args])


def one_error_line(capsys) -> str:
    """stderr, which must be exactly one ``drn: error:`` line."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("drn: error: "), lines
    return lines[0]


# --- the same images as EDSR-PyTorch ----------------------------------------------------------


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_evaluate_on_the_import_gives_edsr_pytorchs_own_sr_images(scale, authors, hr_dir,
                                                                   tmp_path):  # fmt: skip
    """x2 and x4 (one and two PixelShuffle(2) stages) and x3 (PixelShuffle(3)) alike; x3 is
    saved in the legacy format of the authors' 2018 files."""
    file = save_state(tmp_path / f"x{scale}.pt", authors[scale].state_dict(), legacy=scale == 3)
    out, sr_dir, scores = tmp_path / "imported.pt", tmp_path / "sr", tmp_path / "scores.json"
    assert drn("import", "edsr-pytorch", file, "--scale", scale, "--out", out) == 0
    assert drn("evaluate", "--model", out, "--hr", hr_dir, "--scale", scale, "--save-sr", sr_dir,
               "--json", scores, "--device", "cpu", "--no-track") == 0  # fmt: skip
    assert json.loads(scores.read_text())["model"] == "edsr_baseline"
    for hr_path in sorted(hr_dir.iterdir()):
        _, lr = lr_of(read_image(hr_path), scale)
        expected = authors_sr(authors[scale], lr)
        ours = read_image(sr_dir / hr_path.name)
        assert ours.shape == expected.shape == (60, 72, 3)
        difference = np.abs(ours.astype(int) - expected.astype(int))
        assert difference.max() <= 1, hr_path.name
        assert (difference == 0).mean() > 0.99
        assert ((expected > 0) & (expected < 255)).mean() > 0.5  # not clamped flat: a real test


def test_the_import_works_with_self_ensemble_and_upscale(authors, release_file, hr_dir, tmp_path):
    out, sr_dir = tmp_path / "imported.pt", tmp_path / "sr"
    assert drn("import", "edsr-pytorch", release_file, "--scale", 2, "--out", out) == 0
    assert drn("evaluate", "--model", out, "--hr", hr_dir, "--scale", 2, "--self-ensemble",
               "--save-sr", sr_dir, "--device", "cpu", "--no-track") == 0  # fmt: skip
    image = read_image(hr_dir / "bird.png")
    _, lr = lr_of(image, 2)
    difference = read_image(sr_dir / "bird.png").astype(int) - authors_sr(authors[2], lr, True)
    assert np.abs(difference).max() <= 1
    big = tmp_path / "big.png"
    assert drn("upscale", hr_dir / "bird.png", "--weights", out, "--scale", 2, "-o", big) == 0
    difference = read_image(big).astype(int) - authors_sr(authors[2], image)
    assert read_image(big).shape == (120, 144, 3) and np.abs(difference).max() <= 1


def test_the_checkpoint_is_our_edsr_baseline_and_records_the_file(release_file, capsys):
    """Without --out it goes beside the file; the sizes are the baseline's published ones; an
    unknown file is imported with a one-line warning."""
    assert drn("import", "edsr-pytorch", release_file, "--scale", 2) == 0
    captured = capsys.readouterr()
    warning = captured.err.strip().splitlines()
    assert len(warning) == 1 and warning[0].startswith("drn: warning: ")
    assert "edsr_baseline_x2-mine.pt is not a known release" in warning[0]
    out = release_file.with_name("edsr_baseline_x2-mine.drn.pt")
    assert f"-> {out}: edsr_baseline x2 (C = 64, B = 16), 72 tensors" in captured.out
    payload = load_checkpoint(out)  # a verified drn checkpoint
    config = {"channels": 64, "blocks": 16, "res_scale": 1.0}
    assert payload["model"] == {"name": "edsr_baseline", "scale": 2, "config": config}
    sha256, size = file_digest(release_file)
    origin = {"format": "edsr-pytorch", "file": release_file.name, "sha256": sha256, "size": size}
    assert payload["origin"] == {**origin, "release": "", "url": ""}
    assert set(payload["state_dict"]) == set(build_model("edsr_baseline", 2).state_dict())
    assert not [p for p in release_file.parent.iterdir() if p.name.startswith(".")]


def test_an_out_folder_gets_the_checkpoint_under_its_default_name(release_file, tmp_path):
    folder = tmp_path / "imported"
    folder.mkdir()
    assert drn("import", "edsr-pytorch", release_file, "--scale", 2, "--out", folder) == 0
    assert [p.name for p in folder.iterdir()] == ["edsr_baseline_x2-mine.drn.pt"]


def test_track_makes_an_mlflow_run_that_the_evaluations_log_to(release_file, hr_dir, tmp_path,
                                                               monkeypatch, capsys):  # fmt: skip
    """--track: the import is an MLflow run of its own (params.yaml tracking), tagged with the
    file; drn evaluate of the checkpoint logs its scores there; importing the same file again
    reopens that run rather than adding another."""
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params = yaml.safe_load((REPO / "demo/params.yaml").read_text())
    Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = tmp_path / "imported.pt"
    for _ in range(2):
        assert drn("import", "edsr-pytorch", release_file, "--scale", 2, "--out", out,
                   "--track") == 0  # fmt: skip
    record = load_checkpoint(out)["mlflow"]
    assert f"MLflow: run {record['run_id']} in " in capsys.readouterr().out
    json_path = tmp_path / "scores.json"
    assert drn("evaluate", "--model", out, "--hr", hr_dir, "--scale", 2, "--json", json_path) == 0
    assert "logged to run edsr_baseline-released_x2" in capsys.readouterr().out
    client = MlflowClient(record["tracking_uri"])
    [experiment] = [e for e in client.search_experiments() if e.name == "drn-repro-demo"]
    [found] = client.search_runs([experiment.experiment_id])  # one run for the two imports
    assert found.info.run_id == record["run_id"] and found.info.status == "FINISHED"
    assert found.info.run_name == "edsr_baseline-released_x2"
    sha256, _size = file_digest(release_file)
    tags = found.data.tags
    assert (tags["variant"], tags["scale"], tags["roles"]) == ("edsr_baseline", "2", "released")
    assert (tags["origin_sha256"], tags["origin_file"]) == (sha256, release_file.name)
    psnr = json.loads(json_path.read_text())["psnr"]
    assert found.data.metrics["hr_x2_psnr"] == pytest.approx(psnr)  # hr_dir's name


def test_track_with_tracking_off_imports_without_mlflow(release_file, tmp_path, monkeypatch,
                                                        capsys):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    params = yaml.safe_load((REPO / "demo/params.yaml").read_text())
    params["tracking"]["enabled"] = False
    Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = tmp_path / "imported.pt"
    assert drn("import", "edsr-pytorch", release_file, "--scale", 2, "--out", out, "--track") == 0
    assert "MLflow: nothing logged: tracking.enabled is false in params.yaml" in (
        capsys.readouterr().out
    )
    assert "mlflow" not in load_checkpoint(out) and not Path("mlflow.db").exists()


# --- the authors' releases: recorded digests, checked -----------------------------------------


def test_the_authors_three_releases_are_recorded_with_their_digest_size_and_url():
    recorded = releases("edsr_baseline")
    assert release_format("edsr_baseline") == "edsr-pytorch"  # drn import reads them
    assert sorted(recorded) == [2, 3, 4]
    sizes = {2: 5_490_680, 3: 6_229_240, 4: 6_081_831}  # from the Git LFS pointers (issue 20)
    for scale, release in recorded.items():
        assert re.fullmatch(rf"edsr_baseline_x{scale}-[0-9a-f]{{8}}\.pt", release.name)
        assert release.name.removesuffix(".pt").endswith(release.sha256[:8])  # the name says
        assert re.fullmatch(r"[0-9a-f]{64}", release.sha256) and release.size == sizes[scale]
        assert release.url == f"https://cv.snu.ac.kr/research/EDSR/models/{release.name}"


@pytest.fixture
def known(monkeypatch, tmp_path, authors):
    """A file made here, recorded as the authors' x2 release (the real one is never fetched)."""
    path = save_state(tmp_path / "edsr_baseline_x2-0123abcd.pt", authors[2].state_dict())
    sha256, size = file_digest(path)
    release = Release(2, path.name, f"https://example.invalid/{path.name}", sha256, size)
    monkeypatch.setattr(edsr_pytorch, "releases", lambda variant: {2: release})
    return path


def test_a_known_release_is_verified_by_its_sha256_and_size(known, tmp_path, capsys):
    out = tmp_path / "released.pt"
    assert drn("import", "edsr-pytorch", known, "--scale", 2, "--out", out) == 0
    captured = capsys.readouterr()
    assert captured.err == ""  # no warning
    assert "the authors' edsr_baseline_x2-0123abcd.pt (sha256 and size verified)" in captured.out
    assert load_checkpoint(out)["origin"]["release"] == known.name
    renamed = known.rename(tmp_path / "downloaded.pt")  # the bytes are what count
    assert drn("import", "edsr-pytorch", renamed, "--scale", 2, "--out", out) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("damage", ["one byte changed", "truncated"])
def test_a_tampered_or_incomplete_release_is_one_line_naming_it(damage, known, tmp_path, capsys):
    data = bytearray(known.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0xFF
    known.write_bytes(bytes(data))
    out = tmp_path / "released.pt"
    assert drn("import", "edsr-pytorch", known, "--scale", 2, "--out", out) == 1
    line = one_error_line(capsys)
    assert f"{known}: not the authors' edsr_baseline_x2-0123abcd.pt (sha256" in line
    assert "download it again from https://example.invalid/" in line
    assert not out.exists()


def test_a_release_of_another_scale_is_a_usage_error(known, capsys):
    assert drn("import", "edsr-pytorch", known, "--scale", 4) == 2
    assert f"--scale 4: {known} is the authors' x2 model" in one_error_line(capsys)


# --- bad files: one line naming the file or the tensor, nothing written -----------------------


def edited(state: dict, drop: str | None = None, **replace: torch.Tensor) -> dict:
    """A copy of ``state`` without ``drop``, with ``replace``d tensors (``__`` for ``.``)."""
    state = {k: v.clone() for k, v in state.items() if k != drop}
    state.update({k.replace("__", "."): v for k, v in replace.items()})
    return state


class PickledCode:
    def __reduce__(self):
        return (print, ("this would run on load",))


MEAN = 255 * torch.tensor(DIV2K_MEAN)
# Each bad input: (what torch.save writes, made from the authors' models by scale; or bytes;
# or "drn", a drn checkpoint), the --scale given, the message expected ({file}: the file).
BAD = {
    "a file for x3, imported as x2": (lambda a: a[3].state_dict(), 2,
                                      "--scale 2: {file} is a x3 model"),
    "a file for x2, imported as x4": (lambda a: a[2].state_dict(), 4,
                                      "--scale 4: {file} is a x2 model"),
    "a missing tensor": (lambda a: edited(a[2].state_dict(), drop="body.7.body.2.bias"), 2,
                         "{file}: tensor body.7.body.2.bias is missing"),
    "an extra tensor": (lambda a: edited(a[2].state_dict(), body__17__weight=torch.zeros(3)), 2,
                        "{file}: unexpected tensor body.17.weight"),
    "a tensor of another shape": (
        lambda a: edited(a[2].state_dict(), body__3__body__0__weight=torch.zeros(64, 64, 1, 1)),
        2, "{file}: tensor body.3.body.0.weight has shape (64, 64, 1, 1), edsr_baseline",
    ),
    "EDSR proper's sizes (C = 256)": (
        lambda a: AuthorsEDSR(2, channels=256, blocks=1).state_dict(), 2,
        "{file}: tensor head.0.weight has shape (256, 3, 3, 3), edsr_baseline: C = 64, B = 16 "
        "has (64, 3, 3, 3)",
    ),
    "no MeanShift (our own state dict)": (
        lambda a: build_model("edsr_baseline", 2).state_dict(), 2,
        "{file}: tensor sub_mean.weight is missing",
    ),
    "a MeanShift of rgb_range 1": (
        lambda a: edited(a[2].state_dict(), sub_mean__bias=-MEAN / 255), 2,
        "{file}: sub_mean.bias is (-0.4488, -0.4371, -0.404) of shape (3), not EDSR's MeanShift",
    ),
    "a MeanShift of another mean": (
        lambda a: edited(a[2].state_dict(), add_mean__bias=MEAN.flip(0)), 2,
        "{file}: add_mean.bias is (103.02, ",
    ),
    "integer weights": (
        lambda a: edited(a[2].state_dict(), tail__1__bias=torch.zeros(3, dtype=torch.int64)), 2,
        "{file}: tensor tail.1.bias is torch.int64, not floating point",
    ),
    "NaN weights": (
        lambda a: edited(a[2].state_dict(), head__0__bias=torch.full((64,), float("nan"))), 2,
        "{file}: tensor head.0.bias holds NaN or infinite values",
    ),
    "a list": (lambda a: [1, 2, 3], 2, "{file}: not an EDSR-PyTorch state dict (a Python list"),
    "a training checkpoint": (
        lambda a: {"state_dict": a[2].state_dict(), "epoch": 300}, 2,
        "{file}: not an EDSR-PyTorch state dict: its entry 'state_dict' is a Python "
        "OrderedDict, not a tensor",
    ),
    "a drn checkpoint": ("drn", 2, "{file}: already a drn-repro checkpoint"),
    "a pickle with code in it": (lambda a: PickledCode(), 2,
                                 "{file}: refused: it holds objects other than tensors"),
    "not a PyTorch file": (b"EDSR weights\n", 2, "{file}: not a readable PyTorch file"),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD)
def test_a_bad_file_is_one_line_naming_the_file_or_tensor(case, authors, tmp_path, capsys):
    content, scale, expected = BAD[case]
    file = tmp_path / "weights.pt"
    if isinstance(content, bytes):
        file.write_bytes(content)
    elif content == "drn":
        save_checkpoint(file, build_model("edsr_baseline", 2))
    else:
        torch.save(content(authors), file, pickle_module=pickle)
    out = tmp_path / "out" / "imported.pt"
    code = drn("import", "edsr-pytorch", file, "--scale", scale, "--out", out)
    assert code == (2 if expected.startswith("--scale") else 1)
    assert expected.format(file=file) in one_error_line(capsys)
    assert not out.parent.exists() or not list(out.parent.iterdir())  # nothing, not a temporary


def test_a_missing_file_or_an_out_onto_the_file_is_a_usage_error(release_file, tmp_path, capsys):
    missing = tmp_path / "nowhere.pt"
    assert drn("import", "edsr-pytorch", missing, "--scale", 2) == 2
    assert f"{missing}: no such file" in one_error_line(capsys)
    before = release_file.read_bytes()
    assert drn("import", "edsr-pytorch", release_file, "--scale", 2, "--out", release_file) == 2
    assert "is the file imported" in one_error_line(capsys)
    assert release_file.read_bytes() == before
