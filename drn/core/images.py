"""Image files on disk: reading, atomic writing, listing folders, pairing files by name, modcrop.

Pixels are handed around as uint8 numpy arrays, HxW for grayscale and HxWx3 for colour. Every
failure names the file it concerns (:class:`~drn.core.errors.DataError`, or
:class:`~drn.core.errors.UsageError` for a folder that is not there).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from drn.core.errors import DataError, UsageError

#: File suffixes Pillow can open (PDF and the like are save-only and excluded).
IMAGE_SUFFIXES = frozenset(
    suffix for suffix, fmt in Image.registered_extensions().items() if fmt in Image.OPEN
)

# Trailing name tags that benchmark archives and SR methods add to an image's stem:
# baby_HR_x4, babyx4, baby_SR, img_001_SRF_4_LR, baby_LRBI_x4, ...
_TAG = re.compile(r"(?:[_-]?x\d+|[_-](?:SRF[_-]\d+|SR|HR|LR|LRBI|BI|BD|DN))$", re.IGNORECASE)
_SEPARATORS = "_-."


@contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``, renamed onto ``path`` only if the block succeeds.

    The file gets the permissions a plain ``open()`` would give it (0644 under umask 022).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=target.suffix, dir=target.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp's 0600 would hide results from others
    finally:
        os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def current_umask() -> int:
    """The process's umask, read without changing it where Linux allows."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere: the only portable way, briefly changing it
    os.umask(mask)
    return mask


def read_image(path: str | os.PathLike, keep_alpha: bool = False) -> np.ndarray:
    """Decode an image to uint8: HxW for grayscale, HxWx3 for anything with colour.

    Palette and CMYK images become RGB; an alpha channel is dropped, or kept as a last channel
    (HxWx2, HxWx4) with ``keep_alpha``. 16-bit and float images are refused rather than silently
    rescaled.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            if keep_alpha and (mode in ("LA", "RGBA", "PA") or "transparency" in image.info):
                image = image.convert("LA" if mode in ("LA", "L") else "RGBA")
            elif mode in ("1", "LA"):
                image = image.convert("L")
            elif mode == "P":
                image = image.convert("RGB")
            elif mode not in ("L", "RGB"):
                if mode.startswith(("I", "F")):
                    raise DataError(f"{path}: {mode} images (16-bit or float) are not supported")
                image = image.convert("RGB")
            return np.asarray(image, dtype=np.uint8).copy()
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise DataError(f"{path}: not a readable image ({error})") from None


def write_image(path: str | os.PathLike, pixels: np.ndarray) -> None:
    """Write a uint8 HxW or HxWx3 array atomically; the format follows the suffix."""
    path = Path(path)
    with atomic_write(path) as tmp:
        Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(tmp, format=_format_of(path))


def _format_of(path: Path) -> str:
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise UsageError(f"{path}: unknown image suffix {path.suffix!r}")
    return fmt


def list_images(folder: str | os.PathLike, what: str = "folder") -> list[Path]:
    """The image files of ``folder`` (not recursive, hidden files skipped), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"{what}: no such folder: {folder}")
    images = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not images:
        raise DataError(f"{folder}: no images in this folder")
    return images


def image_key(path: str | os.PathLike) -> str:
    """The name an image is matched by: its stem without trailing tags such as _x4, x4, _SR, _HR."""
    key = Path(path).stem
    while (stripped := _TAG.sub("", key)) != key and stripped:
        key = stripped
    return key


def pair_images(sr_paths: Sequence[Path], hr_paths: Sequence[Path]) -> list[tuple[str, Path, Path]]:
    """Match SR to HR files by :func:`image_key`: ``[(name, sr, hr)]`` in HR order.

    An SR key may also carry a method name after the HR key (``baby_RCAN_x2`` for ``baby``); the
    longest HR key followed by a separator wins. Every HR image needs exactly one SR image and
    every SR image exactly one HR image.
    """
    hr_by_key: dict[str, Path] = {}
    for hr in hr_paths:
        key = image_key(hr)
        if key in hr_by_key:
            raise DataError(f"{hr}: same name as {hr_by_key[key]} once tags are stripped")
        hr_by_key[key] = hr
    sr_by_key: dict[str, Path] = {}
    for sr in sr_paths:
        key = _match_key(image_key(sr), hr_by_key)
        if key is None:
            raise DataError(f"{sr}: no HR image with a matching name")
        if key in sr_by_key:
            raise DataError(
                f"{sr}: HR image {hr_by_key[key].name} already matched {sr_by_key[key]}"
            )
        sr_by_key[key] = sr
    for key, hr in hr_by_key.items():
        if key not in sr_by_key:
            raise DataError(f"{hr}: no SR image with a matching name")
    return [(key, sr_by_key[key], hr) for key, hr in hr_by_key.items()]


def _match_key(sr_key: str, hr_keys: dict[str, Path]) -> str | None:
    if sr_key in hr_keys:
        return sr_key
    prefixes = [k for k in hr_keys if len(sr_key) > len(k) and sr_key.startswith(k)]
    prefixes = [k for k in prefixes if sr_key[len(k)] in _SEPARATORS]
    return max(prefixes, key=len, default=None)


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """The top-left part of ``img`` whose height and width are multiples of ``scale`` (a view)."""
    height, width = img.shape[:2]
    return img[: height - height % scale, : width - width % scale]
