"""Getting the data: resumable, verified downloads; safe extraction; local copies; sample images;
MATLAB-exact downscaled copies.

``fetch(name, params)`` (``drn fetch NAME``) fills ``{paths.data}/{name}/`` from one entry of
params.yaml's ``sources`` or ``downscaled``, all or nothing (it is built beside and renamed into
place; a fetch killed mid-way leaves the previous folder, or none, and its staging folder is
deleted by the next fetch of that source). One fetch of a source runs at a time; sources that
share an archive wait for each other's download of it.

* ``url``: :func:`download` streams it to ``{paths.data}/downloads/`` with a progress bar on a
  terminal; an interrupted download resumes with an HTTP Range request; the file is checked
  against ``sha256`` when params.yaml gives one, otherwise against the checksum recorded in the
  sources lock file (``paths.sources_lock``) on its first download; only a verified file gets its
  final name, and a verified file already there is not downloaded again. Then :func:`extract`
  extracts it (only its folder ``member``, if given).
* ``local``: a folder (copied; its ``member`` subfolder, if given) or an archive (extracted), for
  offline clusters and licensed data.
* ``skimage``: images that ship inside scikit-image, written as PNG (the offline demo).
* ``downscaled.<name>``: every image of the source ``of``, cropped to a multiple of ``scale`` and
  resized by 1/scale with the MATLAB-exact bicubic resize (``{stem}x{scale}.png``).

Extraction refuses absolute paths, ``..`` and links that leave the target: tar archives through
the standard library's ``data`` filter, zip archives by checking every member first.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import http.client
import json
import os
import shutil
import stat
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from drn.core.errors import DataError, UsageError
from drn.core.images import atomic_write

CHUNK = 1 << 20
TIMEOUT_S = 60
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def _locked(lock_file: Path) -> Iterator[dict[str, Any]]:
    """The sources lock file's contents, read and written under an exclusive file lock."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file.with_name(lock_file.name + ".flock"), "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        try:
            entries = json.loads(lock_file.read_text()) if lock_file.is_file() else {}
        except ValueError:
            raise DataError(f"{lock_file}: not valid JSON; fix or delete it") from None
        before = json.dumps(entries, sort_keys=True)
        yield entries
        if json.dumps(entries, sort_keys=True) != before:
            with atomic_write(lock_file) as tmp:
                tmp.write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n")


def _progress_bar(total: int | None, done: int, label: str):
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    progress = Progress(
        TextColumn(label), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        TimeRemainingColumn(), disable=not sys.stderr.isatty(), transient=True,
    )  # fmt: skip
    task = progress.add_task(label, total=total, completed=done)
    return progress, task


def download(url: str, target: Path, sha256: str | None, lock_file: Path, alternative: str) -> Path:
    """Download ``url`` to ``target`` (resuming ``target.part``) and verify it; returns ``target``.

    Concurrent calls for one target (sources sharing an archive) wait for each other.
    ``alternative`` names what to do instead when the network cannot be reached.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(target.name + ".flock"), "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        return _download(url, target, sha256, lock_file, alternative)


def _download(
    url: str, target: Path, sha256: str | None, lock_file: Path, alternative: str
) -> Path:
    with _locked(lock_file) as lock:
        recorded = lock.get(url)
    expected = sha256 or recorded
    if target.is_file() and (expected is None or sha256_of(target) == expected):
        _record(lock_file, url, sha256_of(target) if expected is None else expected)
        return target
    part = target.with_name(target.name + ".part")
    done = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={done}-"} if done else {})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as error:
        if error.code == 416 and done:  # the part is already whole
            response = None
        else:
            raise DataError(f"cannot download {url}: HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise DataError(f"cannot reach {url} ({reason}); offline? {alternative}") from None
    if response is not None:
        with response:
            if done and response.status != 206:  # the server ignored the Range: start over
                done = 0
            length = response.headers.get("Content-Length")
            total = done + int(length) if length is not None else None
            progress, task = _progress_bar(total, done, target.name)
            try:
                with progress, open(part, "ab" if done else "wb") as file:
                    while chunk := response.read(CHUNK):
                        file.write(chunk)
                        progress.advance(task, len(chunk))
            except (OSError, http.client.HTTPException) as error:
                raise DataError(
                    f"download of {url} broke off ({error}); run again to resume it"
                ) from None
            if total is not None and part.stat().st_size < total:
                raise DataError(f"download of {url} broke off; run again to resume it")
    actual = sha256_of(part)
    if expected is not None and actual != expected:
        part.unlink()
        raise DataError(
            f"{url}: sha256 {actual} does not match the expected {expected}; the download was "
            "discarded (a changed or corrupted file, or a wrong mirror)"
        )
    os.replace(part, target)
    _record(lock_file, url, actual)
    return target


def _record(lock_file: Path, url: str, digest: str) -> None:
    with _locked(lock_file) as lock:
        lock.setdefault(url, digest)


def _is_archive(path: Path) -> bool:
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def extract(archive: Path, target: Path, member: str | None = None) -> None:
    """Extract a zip or tar archive (only its folder ``member``, if given) into ``target``,
    refusing members that would leave it."""
    prefix = member.strip("/") + "/" if member else ""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as bundle:
                members = [m for m in bundle.infolist() if m.filename.startswith(prefix)]
                for info in members:
                    _check_member(archive, info.filename, _zip_is_link(info))
                bundle.extractall(target, members)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as bundle:
                members = [m for m in bundle.getmembers() if m.name.startswith(prefix)]
                for info in members:  # the data filter would only strip a leading "/"
                    _check_member(archive, info.name, False)
                bundle.extractall(target, members, filter="data")
        else:
            raise DataError(f"{archive}: not a zip or tar archive")
    except tarfile.FilterError as error:
        raise DataError(f"{archive}: refused to extract: {error}") from None
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as error:
        raise DataError(f"{archive}: damaged archive ({error})") from None
    if member and not (target / member).is_dir():
        raise DataError(f"{archive}: has no folder {member}")


def _zip_is_link(member: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(member.external_attr >> 16)


def _check_member(archive: Path, name: str, is_link: bool) -> None:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise DataError(f"{archive}: refused to extract {name!r}: it would land outside the target")
    if is_link:
        raise DataError(f"{archive}: refused to extract {name!r}: links are not accepted")


def _export_skimage(names: list[str], target: Path) -> None:
    import skimage

    from drn.core.images import read_image, write_image

    folder = Path(skimage.__file__).parent / "data"
    for name in names:
        if not (folder / name).is_file():
            raise UsageError(f"{name} does not ship with scikit-image")
        write_image(target / f"{Path(name).stem}.png", read_image(folder / name))


def _downscale(source: Path, scale: int, target: Path) -> None:
    from drn.core.images import list_images, modcrop, read_image, write_image
    from drn.protocol.resize import imresize

    for path in list_images(source, str(source)):
        low = imresize(modcrop(read_image(path), scale), 1 / scale)
        write_image(target / f"{path.stem}x{scale}.png", low)


def fetch(name: str, params: dict[str, Any]) -> Path:
    """Fill ``{paths.data}/{name}/`` from ``sources.<name>`` or ``downscaled.<name>``, all or
    nothing: it is built beside the target and renamed into place."""
    data_root = Path(params["paths"]["data"])
    sources, downscaled = params["sources"], params.get("downscaled") or {}
    if name not in sources and name not in downscaled:
        choices = ", ".join(sorted({*sources, *downscaled}))
        raise UsageError(f"unknown source {name!r}; choose from {choices}")
    target = data_root / name
    data_root.mkdir(parents=True, exist_ok=True)
    locks = data_root / "downloads"  # beside the downloads' own lock files
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f".{name}.fetch.flock", "w") as guard:  # one fetch of a source at a time
        fcntl.flock(guard, fcntl.LOCK_EX)
        _remove_stale_staging(data_root, name)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=data_root))
        try:
            if name in downscaled:
                spec = downscaled[name]
                _downscale(data_root / spec["of"], spec["scale"], staging)
                content = staging
            else:
                content = _source(name, sources[name], data_root, staging, params)
            if target.exists():
                shutil.rmtree(target)
            content.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _remove_stale_staging(data_root: Path, name: str) -> None:
    """Delete the staging folders (``.{name}.<8 random characters>``) of fetches of ``name`` that
    were killed (``kill -9``, a node failure); with the source's lock held, none is alive."""
    prefix = f".{name}."
    for folder in data_root.glob(f"{glob.escape(prefix)}*"):
        if len(folder.name) == len(prefix) + 8 and folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder, ignore_errors=True)


def _source(name: str, spec: dict[str, Any], data_root: Path, staging: Path, params: dict) -> Path:
    """Put a source's images under ``staging``; returns the folder that holds them."""
    member = spec.get("member")
    if "url" in spec:
        filename = PurePosixPath(urllib.request.url2pathname(spec["url"].split("?")[0])).name
        archive = download(
            spec["url"], data_root / "downloads" / filename, spec.get("sha256"),
            Path(params["paths"]["sources_lock"]),
            f"Set sources.{name} to {{local: <your copy of {filename}>, member: ...}}.",
        )  # fmt: skip
        extract(archive, staging, member)
        return staging / member if member else staging
    if "local" in spec:
        if not spec["local"]:
            raise UsageError(f"sources.{name}.local: set it to your copy (a folder or archive)")
        local = Path(spec["local"]).expanduser()
        if local.is_dir():
            shutil.copytree(local / (member or ""), staging / "copy", symlinks=False)
            return staging / "copy"
        if local.is_file() and _is_archive(local):
            extract(local, staging, member)
            return staging / member if member else staging
        raise UsageError(f"sources.{name}.local: {local} is not a folder or an archive")
    _export_skimage(spec["skimage"], staging)
    return staging
