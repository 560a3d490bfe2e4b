"""Weights their authors released for a model variant, as drn/reference records them. No torch.

Owns :class:`Release` (one released file: its scale, name, URL, sha256 and size),
:func:`releases` (a variant's, by scale: ``releases.files`` of drn/reference/{variant}.yaml;
none where the file records none), :func:`release_format` (whose layout the files are in: the
``drn import`` format that reads them) and :func:`file_digest`. The plan (params.yaml
``controls_released``), ``drn doctor`` and ``drn import`` read them from here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REFERENCE = Path(__file__).resolve().parents[1] / "reference"


@dataclass(frozen=True)
class Release:
    """One of the authors' released files, as drn/reference/{variant}.yaml records it."""

    scale: int
    name: str
    url: str
    sha256: str
    size: int


def _recorded(variant: str) -> dict[str, Any]:
    path = REFERENCE / f"{variant}.yaml"
    return (yaml.safe_load(path.read_text()) or {}).get("releases") or {} if path.is_file() else {}


def releases(variant: str) -> dict[int, Release]:
    """The authors' releases of ``variant`` by scale ({}: none recorded)."""
    files = _recorded(variant).get("files") or {}
    return {int(scale): Release(int(scale), **entry) for scale, entry in files.items()}


def release_format(variant: str) -> str | None:
    """The ``drn import`` format of ``variant``'s releases (None: no releases recorded)."""
    return _recorded(variant).get("format")


def file_digest(path: str | Path) -> tuple[str, int]:
    """(sha256, size in bytes) of a file."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size
