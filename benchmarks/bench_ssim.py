"""SSIM of a 2040x1356 Y image pair: drn.protocol.metrics.ssim beside
skimage.metrics.structural_similarity.

Both are set to Wang et al.'s ssim_index (Gaussian 11x11 window, sigma 1.5, population
covariance, L = 255; skimage then crops the same 'valid' region). Prints time, ratio and difference.
Run: .venv/bin/python benchmarks/bench_ssim.py
"""

from __future__ import annotations

import datetime

from common import best_of, div2k_sized_photo, machine
from skimage.metrics import structural_similarity

from drn.protocol.metrics import luma, ssim
from drn.protocol.scoring import bicubic_pair


def main() -> None:
    hr, sr = bicubic_pair(div2k_sized_photo(), 2)
    a, b = luma(hr), luma(sr)

    def reference():
        return structural_similarity(
            a, b, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )

    t_ours, t_ref = best_of(lambda: ssim(a, b)), best_of(reference)
    print(f"# SSIM on a {a.shape[1]}x{a.shape[0]} Y image, {datetime.date.today()}, {machine()}")
    print("| drn.protocol.metrics.ssim | skimage structural_similarity | speed-up | difference |")
    print("|---|---|---|---|")
    print(
        f"| {t_ours * 1e3:.1f} ms | {t_ref * 1e3:.1f} ms | {t_ref / t_ours:.1f}x "
        f"| {abs(ssim(a, b) - reference()):.1e} |"
    )


if __name__ == "__main__":
    main()
