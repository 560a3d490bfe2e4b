"""drn.protocol.resize reproduces MATLAB's imresize(..., 'bicubic') on MATLAB's own outputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.io
from conftest import REFS, SET5, SET5_NAMES

from drn.core.images import modcrop, read_image
from drn.protocol.metrics import rgb_to_ycbcr
from drn.protocol.resize import imresize

SQUARE = np.arange(64, dtype=np.float64).reshape(8, 8)
SMALL = np.arange(16, dtype=np.float64).reshape(4, 4)
S15 = np.arange(225, dtype=np.float64).reshape(15, 15)
TOPLEFT = np.zeros((4, 4))
TOPLEFT[0, 0], TOPLEFT[1, 0], TOPLEFT[0, 1], TOPLEFT[0, 3] = 100, 10, 1, 100
BOTTOMRIGHT = np.zeros((4, 4))
BOTTOMRIGHT[3, 3], BOTTOMRIGHT[2, 3], BOTTOMRIGHT[3, 2], BOTTOMRIGHT[3, 0] = 100, 10, 1, 100


def butterfly() -> np.ndarray:
    return read_image(REFS / "imresize/bicubic_pytorch/butterfly_input.png") / 255.0


# file -> (input, output size, antialias), as listed in refs/imresize/NOTES.md
MATLAB_FLOAT_CASES = {
    "down_down_small_noaa": (SMALL, (3, 3), False),
    "down_down_small_aa": (SMALL, (3, 3), True),
    "down_down_noaa": (SQUARE, (3, 4), False),
    "down_down_aa": (SQUARE, (3, 4), True),
    "down_down_irregular_noaa": (SQUARE, (5, 7), False),
    "down_down_irregular_aa": (SQUARE, (5, 7), True),
    "up_up_topleft_noaa": (TOPLEFT, (5, 5), False),
    "up_up_bottomright_noaa": (BOTTOMRIGHT, (5, 5), False),
    "up_up_irregular_noaa": (SQUARE, (11, 13), False),
    "up_up_irregular_aa": (SQUARE, (11, 13), True),
    "down_down_butterfly_irregular_noaa": (None, (123, 234), False),
    "down_down_butterfly_irregular_aa": (None, (123, 234), True),
    "down_down_x2_aa": (SQUARE, (4, 4), True),
    "down_down_x4_aa": (SQUARE, (2, 2), True),
    "down_down_x3_aa": (S15, (5, 5), True),
    "down_down_x5_aa": (S15, (3, 3), True),
}


@pytest.mark.parametrize("name", sorted(MATLAB_FLOAT_CASES))
def test_float_output_matches_matlab(name):
    image, size, antialias = MATLAB_FLOAT_CASES[name]
    image = butterfly() if image is None else image
    expected = scipy.io.loadmat(REFS / f"imresize/bicubic_pytorch/{name}.mat")[name]
    result = imresize(image, output_shape=size, antialias=antialias)
    assert result.dtype == np.float64
    assert result.shape == expected.shape
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("stem", ["bird", "butterfly", "head", "woman"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_vdsr_ycbcr_down_and_up_match_matlab(stem, scale):
    ref = np.load(REFS / f"imresize/vdsr_set5_ycbcr_double/{stem}_GT_x{scale}.npz")
    low = imresize(rgb_to_ycbcr(ref["im_gt"] / 255.0), 1 / scale)
    np.testing.assert_allclose(low, ref["im_l_ycbcr"], rtol=0, atol=1e-10)
    up_y = 255 * imresize(ref["im_l_ycbcr"], scale)[:, :, 0]
    np.testing.assert_allclose(up_y, ref["im_b_y"], rtol=0, atol=1e-10)


@pytest.mark.parametrize("stem", SET5_NAMES)
def test_uint8_set5_x3_is_bit_exact_with_the_edsr_benchmark(stem):
    hr = modcrop(read_image(SET5 / f"{stem}.png"), 3)
    expected = read_image(
        REFS / f"imresize/set5_uint8_LR/edsr_benchmark_via_SwinIR/X3/{stem}x3.png"
    )
    result = imresize(hr, 1 / 3)
    assert result.dtype == np.uint8
    np.testing.assert_array_equal(result, expected)


def matlab_imresize_by_the_book(img, out_shape, antialias=True):
    """MATLAB's algorithm transcribed literally, one output pixel at a time (slow, obvious)."""

    def cubic(x):
        x = abs(x)
        if x <= 1:
            return 1.5 * x**3 - 2.5 * x**2 + 1
        if x <= 2:
            return -0.5 * x**3 + 2.5 * x**2 - 4 * x + 2
        return 0.0

    integer = img.dtype == np.uint8
    out = img.astype(np.float64)
    scales = [out_shape[d] / img.shape[d] for d in (0, 1)]
    for dim in sorted((0, 1), key=lambda d: scales[d]):
        scale, n_in, n_out = scales[dim], out.shape[dim], out_shape[dim]
        width = 4 / scale if (scale < 1 and antialias) else 4
        stretch = scale if (scale < 1 and antialias) else 1
        moved = np.moveaxis(out, dim, 0)
        result = np.zeros((n_out, *moved.shape[1:]))
        for i in range(n_out):
            u = (i + 1) / scale + 0.5 * (1 - 1 / scale)
            left = math.floor(u - width / 2)
            taps = [left + k for k in range(math.ceil(width) + 2)]
            weights = [stretch * cubic(stretch * (u - j)) for j in taps]
            total = sum(weights)
            for j, w in zip(taps, weights, strict=True):
                k = (j - 1) % (2 * n_in)
                k = k if k < n_in else 2 * n_in - 1 - k
                result[i] += (w / total) * moved[k]
        if integer:
            result = np.clip(np.floor(result + 0.5), 0, 255)
        out = np.moveaxis(result, 0, dim)
    return out.astype(np.uint8) if integer else out


@pytest.mark.parametrize(
    ("shape", "out_shape", "antialias"),
    [
        ((13, 17, 3), (5, 6), True),
        ((13, 17, 3), (5, 6), False),
        ((9, 7), (23, 16), True),
        ((20, 11, 3), (7, 29), True),
        ((1, 9), (3, 4), True),
        ((31, 33, 2), (10, 11), True),
    ],
)
@pytest.mark.parametrize("dtype", [np.uint8, np.float64])
def test_equals_a_literal_transcription_of_matlab(shape, out_shape, antialias, dtype):
    rng = np.random.default_rng(sum(shape) + sum(out_shape))
    img = rng.integers(0, 256, shape).astype(dtype)
    expected = matlab_imresize_by_the_book(img, out_shape, antialias)
    result = imresize(img, output_shape=out_shape, antialias=antialias)
    assert result.dtype == (np.uint8 if dtype == np.uint8 else np.float64)
    if dtype == np.uint8:
        np.testing.assert_array_equal(result, expected)
    else:
        np.testing.assert_allclose(result, expected, rtol=0, atol=1e-10)


def test_output_size_is_ceil_of_scale_times_size():
    img = np.zeros((101, 67, 3), np.uint8)
    assert imresize(img, 1 / 3).shape == (34, 23, 3)
    assert imresize(img, 2).shape == (202, 134, 3)
    assert imresize(img, (0.5, 2)).shape == (51, 134, 3)
    assert imresize(img[:, :, 0], output_shape=(10, 20)).shape == (10, 20)


def test_float32_input_is_computed_and_returned_in_float64():
    img = np.random.default_rng(0).random((20, 30), dtype=np.float32)
    result = imresize(img, 0.5)
    assert result.dtype == np.float64
    np.testing.assert_allclose(result, imresize(img.astype(np.float64), 0.5), atol=0)


def test_uint8_saturates_instead_of_wrapping():
    img = np.zeros((16, 16), np.uint8)
    img[:, 8:] = 255  # a hard edge: the cubic kernel overshoots on both sides
    result = imresize(img, 2)
    assert result.min() == 0 and result.max() == 255
    floats = imresize(img.astype(np.float64), 2)
    assert floats.min() < 0 and floats.max() > 255


def test_scale_one_is_the_identity():
    img = np.random.default_rng(1).integers(0, 256, (12, 9, 3)).astype(np.uint8)
    np.testing.assert_array_equal(imresize(img, 1), img)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({}, ValueError),
        ({"scale": 2, "output_shape": (4, 4)}, ValueError),
        ({"scale": 0}, ValueError),
        ({"scale": -2}, ValueError),
        ({"scale": float("nan")}, ValueError),
        ({"output_shape": (0, 4)}, ValueError),
    ],
)
def test_bad_arguments_are_refused(kwargs, error):
    with pytest.raises(error, match="imresize"):
        imresize(np.zeros((8, 8)), **kwargs)


@pytest.mark.parametrize(
    "img", [np.zeros((8, 8), np.int8), np.zeros((8, 8), bool), np.zeros((0, 8)), np.zeros(8)]
)
def test_unsupported_arrays_are_refused(img):
    with pytest.raises((TypeError, ValueError), match="imresize"):
        imresize(img, 2)
