"""drn.protocol.metrics is the protocol the literature's tables were scored with (Y PSNR, Wang's
SSIM)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SET5, SET14_SAMPLES
from scipy.signal import correlate2d
from skimage.metrics import structural_similarity

from drn.core.images import read_image
from drn.protocol.metrics import gaussian_window, luma, psnr, rgb_to_ycbcr, shave, ssim
from drn.protocol.scoring import bicubic_pair


def ssim_index_by_the_book(a, b):
    """Wang et al.'s ssim_index.m written out: 2-D 'valid' filter2 with the 11x11 Gaussian."""
    window = np.outer(gaussian_window(), gaussian_window())
    window /= window.sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def filt(z):
        return correlate2d(z, window, mode="valid")

    mu1, mu2 = filt(a), filt(b)
    s11 = filt(a * a) - mu1 * mu1
    s22 = filt(b * b) - mu2 * mu2
    s12 = filt(a * b) - mu1 * mu2
    ssim_map = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / (
        (mu1 * mu1 + mu2 * mu2 + c1) * (s11 + s22 + c2)
    )
    return ssim_map.mean()


def test_luma_is_bt601_of_8bit_rgb_kept_as_float():
    pixels = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [10, 20, 30]]], np.uint8)
    expected = (
        16 + (65.481 * pixels[..., 0] + 128.553 * pixels[..., 1] + 24.966 * pixels[..., 2]) / 255
    )
    np.testing.assert_allclose(luma(pixels), expected, rtol=0, atol=1e-12)
    assert luma(pixels)[0, 0] == 16 and luma(pixels)[0, 1] == pytest.approx(235)
    assert luma(pixels).dtype == np.float64 and luma(pixels)[0, 3] % 1 != 0  # not rounded


def test_luma_scores_grayscale_as_it_is():
    gray = np.arange(256, dtype=np.uint8).reshape(16, 16)
    np.testing.assert_array_equal(luma(gray), gray.astype(np.float64))


def test_rgb_to_ycbcr_is_matlab_rgb2ycbcr_for_doubles():
    rgb = np.array([[[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]])
    np.testing.assert_allclose(
        rgb_to_ycbcr(rgb) * 255,
        [[[235, 128, 128], [16, 128, 128], [81.481, 90.203, 240]]],
        atol=1e-9,
    )


def test_psnr_uses_peak_255():
    a = np.zeros((4, 4))
    assert psnr(a, a + 1) == pytest.approx(10 * np.log10(255**2))
    assert psnr(a, a + 255) == pytest.approx(0)
    assert psnr(a, a) == float("inf")


def test_shave_removes_the_border_on_every_side():
    img = np.arange(100).reshape(10, 10)
    np.testing.assert_array_equal(shave(img, 3), img[3:7, 3:7])
    assert shave(img, 0) is img
    with pytest.raises(ValueError, match="nothing left"):
        shave(img, 5)


@pytest.mark.parametrize("shape", [(11, 11), (12, 40), (43, 17), (75, 300), (33, 129)])
def test_ssim_equals_matlab_ssim_index_on_random_images(shape):
    rng = np.random.default_rng(shape[0] * shape[1])
    a = rng.uniform(0, 255, shape)
    b = np.clip(a + rng.normal(0, 20, shape), 0, 255)
    assert ssim(a, b) == pytest.approx(ssim_index_by_the_book(a, b), abs=1e-12)


def test_ssim_equals_matlab_ssim_index_on_a_real_image():
    hr, sr = bicubic_pair(read_image(SET5 / "butterfly.png"), 4)
    a, b = shave(luma(hr), 4), shave(luma(sr), 4)
    assert ssim(a, b) == pytest.approx(ssim_index_by_the_book(a, b), abs=1e-12)


def test_ssim_equals_skimage_with_the_equivalent_settings():
    hr, sr = bicubic_pair(read_image(SET14_SAMPLES / "baboon.png"), 3)
    a, b = shave(luma(hr), 3), shave(luma(sr), 3)
    expected = structural_similarity(
        a, b, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert ssim(a, b) == pytest.approx(expected, abs=1e-10)


def test_ssim_of_an_image_with_itself_is_one():
    a = np.random.default_rng(3).uniform(0, 255, (50, 70))
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    flat = np.full((20, 20), 128.0)
    assert ssim(flat, flat) == 1.0


@pytest.mark.parametrize(("a", "b"), [((10, 30), (10, 30)), ((20, 20), (20, 21)), ((5, 5, 3),) * 2])
def test_ssim_refuses_what_it_cannot_score(a, b):
    with pytest.raises(ValueError, match="ssim"):
        ssim(np.zeros(a), np.zeros(b))
