"""The standard SR evaluation protocol: PSNR and SSIM on the BT.601 luma, as the MATLAB scripts did.

What the literature's tables (EDSR, RCAN, DRN, ...) were scored with (``Evaluate_PSNR_SSIM.m``):

* Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255 for 8-bit RGB, kept as float (MATLAB's
  ``rgb2ycbcr(im2double(img))(:, :, 1) * 255``); a grayscale image is scored as it is;
* ``shave`` pixels (by convention the scale) removed from every border;
* PSNR with peak 255; SSIM as Wang et al.'s ``ssim_index``: 11x11 Gaussian window with sigma 1.5,
  'valid' filtering, K1 = 0.01, K2 = 0.03, L = 255, the mean of the SSIM map;
* per-image values, then the plain mean over the set.

SSIM is computed in float64 with separable filtering done as blocked matrix products (BLAS) over
row bands, so memory stays small and the result equals MATLAB's 2-D ``filter2`` to rounding.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from drn.core.threads import blas_policy

PEAK = 255.0
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03

_YCBCR_MATRIX = np.array(
    [[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]]
)
_YCBCR_OFFSET = np.array([16.0, 128.0, 128.0])


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """MATLAB's ``rgb2ycbcr`` for double images: RGB in [0, 1] to YCbCr in [16/255, 240/255]."""
    return (np.asarray(rgb, dtype=np.float64) @ _YCBCR_MATRIX.T + _YCBCR_OFFSET) / 255.0


def luma(img: np.ndarray) -> np.ndarray:
    """Float64 Y in [0, 255] of an 8-bit HxWx3 RGB image; a 2-D grayscale image unchanged."""
    img = np.asarray(img)
    if img.ndim == 2:
        return img.astype(np.float64)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"luma: expected HxW or HxWx3, got shape {img.shape}")
    r, g, b = (img[:, :, c].astype(np.float64) for c in range(3))
    y = r * _YCBCR_MATRIX[0, 0]
    y += g * _YCBCR_MATRIX[0, 1]
    y += b * _YCBCR_MATRIX[0, 2]
    y /= 255.0
    y += 16.0
    return y


def shave(img: np.ndarray, border: int) -> np.ndarray:
    """``img`` without ``border`` pixels on every side (a view)."""
    if border < 0:
        raise ValueError(f"shave: border must be >= 0, got {border}")
    if border == 0:
        return img
    if min(img.shape[:2]) <= 2 * border:
        raise ValueError(
            f"shave: a {img.shape[0]}x{img.shape[1]} image has nothing left after {border}"
        )
    return img[border:-border, border:-border]


def psnr(a: np.ndarray, b: np.ndarray, peak: float = PEAK) -> float:
    """Peak signal-to-noise ratio in dB of two same-shaped arrays (inf when identical)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"psnr: shapes differ: {a.shape} vs {b.shape}")
    diff = a - b
    mse = float(np.mean(diff * diff))
    return float("inf") if mse == 0 else 10.0 * np.log10(peak * peak / mse)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """The normalised 1-D factor of MATLAB's ``fspecial('gaussian', size, sigma)``."""
    r = np.arange(size) - (size - 1) / 2
    g = np.exp(-(r * r) / (2 * sigma * sigma))
    return g / g.sum()


def _banded(rows: int, kernel: np.ndarray) -> np.ndarray:
    """``rows`` x ``rows + len(kernel) - 1`` matrix whose product is a 'valid' correlation."""
    band = np.zeros((rows, rows + kernel.size - 1))
    for r in range(rows):
        band[r, r : r + kernel.size] = kernel
    return band


_BAND_ROWS = 32  # output rows filtered per band: one dense vertical block
_COLUMN_BLOCK = 16  # output columns per horizontal block


@blas_policy
def ssim(a: np.ndarray, b: np.ndarray, peak: float = PEAK) -> float:
    """Mean SSIM of two 2-D images, exactly Wang et al.'s ``ssim_index`` (no downsampling).

    Four maps are filtered, not five: only the sum of the two variances enters SSIM, so x*x + y*y
    is filtered once; the constant C2 and the factor 2 of the covariance ride along inside it.
    """
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(f"ssim: expected two 2-D arrays of one shape, got {x.shape} and {y.shape}")
    kernel = gaussian_window()
    n = kernel.size
    height, width = x.shape
    out_h, out_w = height - n + 1, width - n + 1
    if out_h < 1 or out_w < 1:
        raise ValueError(f"ssim: a {height}x{width} image is smaller than the {n}x{n} window")
    c1 = (SSIM_K1 * peak) ** 2
    c2 = (SSIM_K2 * peak) ** 2

    band, cols = _BAND_ROWS, _COLUMN_BLOCK
    col_blocks = -(-out_w // cols)
    padded_w = col_blocks * cols + n - 1
    # x, y, x*x + y*y + C2 and 2*x*y + C2 for one band; the padding beyond the width is a flat
    # black image (SSIM 1, never summed) so that no 0/0 arises there.
    maps = np.zeros((4, band + n - 1, padded_w))
    maps[2:] = c2
    vertical = np.empty((4, band, padded_w))
    horizontal = np.empty((col_blocks, 4 * band, cols))
    col_windows = as_strided(
        vertical, (col_blocks, 4 * band, cols + n - 1), (cols * 8, padded_w * 8, 8)
    )
    vertical_band = _banded(band, kernel)
    horizontal_band = _banded(cols, kernel).T
    last_cols = out_w - (col_blocks - 1) * cols

    total = 0.0
    for top in range(0, out_h, band):
        rows = min(band, out_h - top)
        xs, ys = x[top : top + rows + n - 1], y[top : top + rows + n - 1]
        used = maps[:, : rows + n - 1, :width]
        used[0] = xs
        used[1] = ys
        np.multiply(xs, xs, out=used[2])
        used[2] += ys * ys
        used[2] += c2
        np.multiply(xs, ys, out=used[3])
        used[3] *= 2
        used[3] += c2
        np.matmul(vertical_band, maps, out=vertical)
        np.matmul(col_windows, horizontal_band, out=horizontal)
        f = horizontal.reshape(col_blocks, 4, band, cols)[:, :, :rows]
        mu_x, mu_y, sq_sum, cross = f[:, 0], f[:, 1], f[:, 2], f[:, 3]
        numerator = mu_x * mu_y
        numerator *= 2  # 2 mu_x mu_y
        mu_sq = mu_x * mu_x
        mu_sq += mu_y * mu_y  # mu_x^2 + mu_y^2
        cross -= numerator  # 2 sigma_xy + C2
        numerator += c1
        numerator *= cross
        sq_sum -= mu_sq  # sigma_x^2 + sigma_y^2 + C2
        mu_sq += c1
        mu_sq *= sq_sum  # denominator
        numerator /= mu_sq
        total += numerator[:-1].sum() + numerator[-1, :, :last_cols].sum()
    return float(total / (out_h * out_w))
