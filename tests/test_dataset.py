"""Training data: checked pairs, a decoded cache that follows its sources, reproducible patches."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest
import torch
from conftest import T91
from PIL import Image

from drn.core.errors import DataError
from drn.core.images import modcrop, read_image
from drn.engine.dataset import PatchDataset, StepSampler, build_cache, patch_loader
from drn.protocol.resize import imresize


@pytest.fixture
def t91(tmp_path):
    folder = tmp_path / "hr"
    folder.mkdir()
    for name in ("t1", "t2", "t3", "t5"):
        shutil.copy(T91 / f"{name}.png", folder)
    return folder


def test_lr_is_made_with_matlab_bicubic_when_no_official_lr(t91, tmp_path):
    pairs, _ = build_cache(t91, None, 3, tmp_path / "cache", patch=24)
    assert [p.name for p in pairs] == ["t1", "t2", "t3", "t5"]
    hr = modcrop(read_image(t91 / "t2.png"), 3)
    np.testing.assert_array_equal(np.load(pairs[1].hr), hr)
    np.testing.assert_array_equal(np.load(pairs[1].lr), imresize(hr, 1 / 3))


def test_official_lr_images_are_used_when_present(t91, tmp_path):
    lr_dir = tmp_path / "lr"
    lr_dir.mkdir()
    for path in sorted(t91.iterdir()):  # DIV2K names them 0001x2.png: the tag is stripped
        lr = np.full_like(imresize(modcrop(read_image(path), 2), 0.5), 7)
        Image.fromarray(lr).save(lr_dir / f"{path.stem}x2.png")
    pairs, _ = build_cache(t91, lr_dir, 2, tmp_path / "cache", patch=24)
    assert (np.load(pairs[0].lr) == 7).all()


def test_the_cache_is_reused_and_follows_changed_sources(t91, tmp_path):
    cache = tmp_path / "cache"
    pairs, version = build_cache(t91, None, 2, cache, patch=24)
    stamps = {p.lr: p.lr.stat().st_mtime_ns for p in pairs}
    again, same_version = build_cache(t91, None, 2, cache, patch=24)
    assert same_version == version
    assert {p.lr: p.lr.stat().st_mtime_ns for p in again} == stamps  # nothing decoded again
    time.sleep(0.01)
    Image.fromarray(np.zeros((60, 60, 3), np.uint8)).save(t91 / "t3.png")
    changed, new_version = build_cache(t91, None, 2, cache, patch=24)
    assert new_version != version
    assert np.load(changed[2].hr).shape == (60, 60, 3)
    assert changed[0].lr.stat().st_mtime_ns == stamps[pairs[0].lr]


def test_unreadable_training_image_is_named(t91, tmp_path):
    (t91 / "t2.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"t2\.png: not a readable image"):
        build_cache(t91, None, 2, tmp_path / "cache", patch=24)


def test_lr_of_the_wrong_size_is_named(t91, tmp_path):
    lr_dir = tmp_path / "lr"
    lr_dir.mkdir()
    for path in sorted(t91.iterdir()):
        Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(lr_dir / f"{path.stem}x2.png")
    with pytest.raises(DataError, match=r"t1x2\.png: LR is 20x20 but HR .*t1\.png"):
        build_cache(t91, lr_dir, 2, tmp_path / "cache", patch=8)


def test_an_image_smaller_than_a_patch_is_named(t91, tmp_path):
    Image.fromarray(np.zeros((40, 90, 3), np.uint8)).save(t91 / "t9.png")
    with pytest.raises(DataError, match=r"t9\.png: LR is 45x20, smaller than a 24 patch"):
        build_cache(t91, None, 2, tmp_path / "cache", patch=24)


def test_patches_are_aligned_and_augmented(t91, tmp_path):
    pairs, _ = build_cache(t91, None, 2, tmp_path / "cache", patch=16)
    dataset = PatchDataset(pairs, scale=2, patch=16, seed=3)
    kinds = set()
    for sample in range(40):
        lr, hr = dataset[sample]
        assert lr.shape == (16, 16, 3) and hr.shape == (32, 32, 3) and lr.dtype == torch.uint8
        # the LR patch is the MATLAB-bicubic image of the HR patch's region (away from borders)
        inner = imresize(hr.numpy(), 0.5).astype(int)[3:-3, 3:-3]
        assert np.abs(inner - lr.numpy().astype(int)[3:-3, 3:-3]).max() <= 2
        kinds.add(bytes(lr.numpy()[:2, :2].tobytes()))
    assert len(kinds) > 20  # crops and orientations vary
    assert torch.equal(dataset[7][0], PatchDataset(pairs, 2, 16, seed=3)[7][0])
    assert not torch.equal(dataset[7][0], PatchDataset(pairs, 2, 16, seed=4)[7][0])


def test_step_sampler_splits_each_step_over_ranks():
    single = list(StepSampler(3, 5, batch=4))
    assert single == list(range(12, 20))
    ranks = [list(StepSampler(3, 5, batch=2, rank=r, world=2)) for r in (0, 1)]
    assert ranks == [[12, 13, 16, 17], [14, 15, 18, 19]]
    assert sorted(ranks[0] + ranks[1]) == single


def test_the_loader_yields_the_same_batches_with_or_without_workers(t91, tmp_path):
    pairs, _ = build_cache(t91, None, 2, tmp_path / "cache", patch=16)
    dataset = PatchDataset(pairs, 2, 16, seed=0)
    plain = [b[0] for b in patch_loader(dataset, StepSampler(0, 6, 4), 0, False, 0)]
    workers = [b[0] for b in patch_loader(dataset, StepSampler(0, 6, 4), 2, False, 0)]
    resumed = [b[0] for b in patch_loader(dataset, StepSampler(4, 6, 4), 2, False, 0)]
    assert len(plain) == 6 and all(b.shape == (4, 16, 16, 3) for b in plain)
    assert all(torch.equal(a, b) for a, b in zip(plain, workers, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(plain[4:], resumed, strict=True))
