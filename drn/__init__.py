"""drn-repro: a verified, provenance-tracked reproduction of DRN (Sun et al., arXiv 1907.02843).

The library's small public API, loaded on first use (``import drn`` loads neither numpy's
work nor torch)::

    from drn import imresize, psnr, ssim, build_model

* :func:`imresize`: MATLAB-exact bicubic ``imresize`` (:mod:`drn.protocol.resize`);
* :func:`psnr`, :func:`ssim`: the standard protocol's metrics on 2-D arrays
  (:mod:`drn.protocol.metrics`; ``luma`` and ``shave`` there make the Y channel and the border);
* :func:`build_model`: a registered model variant by name and scale (:mod:`drn.models`; torch).

A script that calls them gets the ``drn`` command's BLAS policy for the duration of each call
(:func:`drn.core.threads.blas_policy`). The folders below are the layers: ``core``,
``protocol``, ``models``, ``engine``, ``pipeline``, ``doctor``, ``report``, ``commands``
(docs/ARCHITECTURE.md has the map).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "build_model", "imresize", "psnr", "ssim"]

_PUBLIC = {
    "imresize": "drn.protocol.resize",
    "psnr": "drn.protocol.metrics",
    "ssim": "drn.protocol.metrics",
    "build_model": "drn.models",
}


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'drn' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
