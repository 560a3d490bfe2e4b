"""Downscaling a 2040x1356 RGB image by 2, 3 and 4: drn's imresize beside Pillow and
scikit-image.

Prints a Markdown table: time of each, ratio to Pillow's bicubic in the same run, and the largest
difference of each from ours in 8-bit levels (ours is MATLAB-exact; the others are not MATLAB's).
Run: .venv/bin/python benchmarks/bench_imresize.py
"""

from __future__ import annotations

import datetime

import numpy as np
from common import best_of, div2k_sized_photo, machine
from PIL import Image
from skimage.transform import resize

from drn.protocol.resize import imresize


def main() -> None:
    hr = div2k_sized_photo()
    pil = Image.fromarray(hr)
    print(f"# imresize, {datetime.date.today()}, {machine()}")
    print(
        "| scale | drn.protocol.resize | Pillow BICUBIC | ours / Pillow | skimage order=3 aa "
        "| max diff Pillow | max diff skimage |"
    )
    print("|---|---|---|---|---|---|---|")
    for scale in (2, 3, 4):
        size = (hr.shape[1] // scale, hr.shape[0] // scale)
        ours = imresize(hr, 1 / scale)
        pillow = np.asarray(pil.resize(size, Image.BICUBIC))
        skimage = resize(hr, ours.shape, order=3, anti_aliasing=True, preserve_range=True)
        skimage = np.clip(np.round(skimage), 0, 255).astype(np.uint8)
        t_ours = best_of(lambda s=scale: imresize(hr, 1 / s))
        t_pil = best_of(lambda sz=size: pil.resize(sz, Image.BICUBIC))
        t_sk = best_of(
            lambda s=ours.shape: resize(hr, s, order=3, anti_aliasing=True, preserve_range=True),
            repeats=2,
        )
        diff_pil = np.abs(pillow.astype(int) - ours).max()
        diff_sk = np.abs(skimage.astype(int) - ours).max()
        print(
            f"| 1/{scale} | {t_ours * 1e3:.1f} ms | {t_pil * 1e3:.1f} ms | {t_ours / t_pil:.2f} "
            f"| {t_sk * 1e3:.0f} ms | {diff_pil} | {diff_sk} |"
        )


if __name__ == "__main__":
    main()
