"""The ``data.*`` and ``disk.*`` checks, and the file systems that they and the others look at.

It owns :func:`filesystem` (the mount point and type of a path, from /proc/mounts) and the kinds
of file system that several hosts share (:data:`NETWORK_FS`) or only one sees
(:data:`NODE_LOCAL_FS`, :data:`NODE_LOCAL_DIRS`); :func:`check_sources` (every source the plan
reads is present, fetchable (a ``url``; checked with a HEAD request only with ``--online``) or a
``local`` copy that exists); :func:`check_released` (each file of released weights the plan
names is there and is the authors'); and :func:`disk_needs` / :func:`check_disk` (each file system
holding data, runs or results has room for what is still to come: downloads, extracted sources,
the decoded training cache, every run's checkpoints, with the numbers and which of them are
approximate). torch, PIL and scikit-image are imported only inside the functions that need them.
"""

from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drn.doctor.result import FAIL, HTTP_TIMEOUT_S, OK, WARN, Result

# File systems that several hosts share (sqlite's locks are unreliable on them) and ones that
# only this host sees; paths under these folders are node-local on most clusters.
NETWORK_FS = {
    "nfs", "nfs4", "lustre", "gpfs", "beegfs", "cephfs", "ceph", "cifs", "smb3", "smbfs",
    "glusterfs", "fuse.glusterfs", "fuse.sshfs", "panfs", "pvfs2", "orangefs", "afs", "wekafs",
    "fuse.juicefs", "9p",
}  # fmt: skip
NODE_LOCAL_FS = {"tmpfs", "ramfs", "overlay", "devtmpfs"}
NODE_LOCAL_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run", "/scratch/local", "/local")

# Download sizes of the official archives, by sha256 (params.yaml's): the TensorFlow Datasets
# checksum list for div2k (tensorflow_datasets/url_checksums/div2k.txt), also the sizes of the
# Git LFS pointers of the same files (same sha256) on the Hugging Face mirror goodfellowliu/DIV2K.
ARCHIVE_BYTES = {
    "9d0b9c463f6e35b6c62cc6a930ee2224f670b34c1df841a57670f9acf0f6c335": 3_530_603_713,  # train HR
    "20dd31fd84d777bc1cf5d6b7654a3f569c0aec74458ae094122ad1d0489900fc": 448_993_893,  # valid HR
    "a53a424317575838dadce4bcd97cf7b744d6855f43740ed5f0245af3cf4bd850": 925_390_592,  # train x2
    "ad5c8e5507e2765823d3c2c5bd0934842efcd487c5370604c224090898b3163a": 427_847_282,  # train x3
    "f006b837f4eb52b82909aa01478e6d6d199eefce932179491d0c9dbb706dde3a": 246_914_039,  # train x4
}
# Archives without a published checksum: (bytes, why approximate).
APPROXIMATE_ARCHIVES = {
    "benchmark.tar": (250_000_000, "EDSR's benchmark.tar: about 250 MB (no published size)"),
}
# The decoded cache of DIV2K_train_HR before its images are here: 800 images of 2K resolution
# (2040 pixels on the long side); 2040 x 1360 on average is an approximation.
DIV2K_TRAIN = (
    "9d0b9c463f6e35b6c62cc6a930ee2224f670b34c1df841a57670f9acf0f6c335",
    800 * 2040 * 1360,
)


# --- file systems ------------------------------------------------------------------------------


def filesystem(path: str | os.PathLike, mounts: str | None = None) -> tuple[str, str]:
    """(mount point, file system type) of ``path`` (links resolved as far as it exists), from
    /proc/mounts (``mounts``: its text, for tests)."""
    path, rest = Path(os.path.abspath(path)), []
    while not path.exists() and path != path.parent:
        path, rest = path.parent, [path.name, *rest]
    real = os.path.join(os.path.realpath(path), *rest)
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:
            mounts = ""
    best = ("/", "unknown")
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ")
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best[0]) and (point != "/" or best[1] == "unknown"):
            best = (point, parts[2])
    return best


# --- data and disk -------------------------------------------------------------------------------


def head_request(url: str, timeout: float = HTTP_TIMEOUT_S) -> tuple[int | None, int | None, str]:
    """(HTTP status or None, Content-Length or None, error) of a HEAD request."""
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            return response.status, int(length) if length and length.isdigit() else None, ""
    except urllib.error.HTTPError as error:
        return error.code, None, ""
    except (urllib.error.URLError, OSError, ValueError) as error:
        return None, None, str(getattr(error, "reason", error))


def needed_sources(params: dict[str, Any], plan: Any) -> tuple[list[str], list[str]]:
    """(sources, downscaled sources) the plan reads, as Snakemake fetches them."""
    from drn.pipeline.dvc_stages import _needed_sources  # the one definition, shared with dvc.yaml

    return _needed_sources(params, plan)


def _has_files(folder: Path) -> bool:
    return folder.is_dir() and any(p.is_file() for p in folder.iterdir())


def check_sources(params: dict[str, Any], plan: Any, online: bool = False,
                  head: Callable[[str], tuple[int | None, int | None, str]] = head_request,
                  ) -> list[Result]:  # fmt: skip
    """Each source the plan reads: present, fetchable (url), made (skimage, downscaled), or a
    local copy that exists; ``local: null`` fails naming the key to set."""
    data = Path(params["paths"]["data"])
    fetched, derived = needed_sources(params, plan)
    results = []
    for source in fetched:
        name, spec, folder = f"data.{source}", params["sources"][source], data / source
        if _has_files(folder):
            count = sum(1 for p in folder.iterdir() if p.is_file())
            results.append(Result(name, OK, f"present: {folder} ({count} files)"))
        elif "url" in spec:
            if not online:
                results.append(Result(name, OK, f"to download from {spec['url']} (not checked: "
                                      "--online asks the server)"))  # fmt: skip
                continue
            status, length, error = head(spec["url"])
            size = f", {length / 1e9:.2f} GB" if length else ""
            if status is not None and status < 400:
                results.append(Result(name, OK, f"{spec['url']} answers (HTTP {status}{size})"))
            else:
                results.append(Result(
                    name, FAIL, f"{spec['url']} does not answer here "
                    f"({error or f'HTTP {status}'})",
                    f"on an offline cluster, copy it and set sources.{source} to "
                    f"{{local: /path/to/{Path(spec['url']).name}, member: "
                    f"{spec.get('member') or 'null'}}} in params.yaml; or point url at a mirror",
                ))  # fmt: skip
        elif "local" in spec:
            local = spec["local"]
            if not local:
                results.append(Result(name, FAIL, f"sources.{source}.local is not set and "
                                      f"{folder} is empty",
                                      f"set sources.{source}.local in params.yaml to your copy (a "
                                      "folder or an archive)"))  # fmt: skip
            elif not Path(local).exists():
                missing = f"sources.{source}.local: {local} is not there"
                results.append(Result(name, FAIL, missing, f"fix sources.{source}.local"))
            else:
                results.append(Result(name, OK, f"to copy from {local}"))
        else:
            results.append(Result(name, OK, f"to write from scikit-image's {len(spec['skimage'])} "
                                  "images"))  # fmt: skip
    for source in derived:
        spec, folder = params["downscaled"][source], data / source
        if _has_files(folder):
            results.append(Result(f"data.{source}", OK, f"present: {folder}"))
        else:
            results.append(Result(f"data.{source}", OK, f"to make from {spec['of']} "
                                  f"(bicubic 1/{spec['scale']})"))  # fmt: skip
    return results


def check_released(plan: Any) -> list[Result]:
    """Each file of released weights (params.yaml controls_released) at the plan's scales:
    the authors' file (sha256 and size), another file (imported with a warning), a file named as
    theirs whose bytes are not (the import refuses it), or not there (left out of the plan)."""
    from drn.engine.releases import file_digest, releases

    results = []
    for released in plan.released:
        name, file = f"data.released.{released.variant}.x{released.scale}", Path(released.file)
        theirs = releases(released.variant)[released.scale]
        if not released.present:
            results.append(Result(name, FAIL, f"{file} is not there: the evaluations of the "
                                  f"authors' {theirs.name} are left out of the plan",
                                  f"curl -fL --create-dirs -o {file} {theirs.url}"))  # fmt: skip
            continue
        sha256, size = file_digest(file)
        if (sha256, size) == (theirs.sha256, theirs.size):
            results.append(Result(name, OK, f"present: {file}, the authors' {theirs.name} "
                                  "(sha256 and size verified)"))  # fmt: skip
        elif file.name == theirs.name:
            results.append(Result(name, FAIL, f"{file}: not the authors' {theirs.name} (sha256 "
                                  f"{sha256[:16]}..., {size:,} bytes): modified or incomplete",
                                  f"download it again: curl -fL -o {file} "
                                  f"{theirs.url}"))  # fmt: skip
        else:
            results.append(Result(name, WARN, f"{file} is not the authors' {theirs.name} "
                                  f"(sha256 {sha256[:16]}...): imported as it is",
                                  f"for the calibration, use {theirs.url}"))  # fmt: skip
    return results


@dataclass(frozen=True)
class Need:
    """Bytes still to come under ``path``: of which kind, what, how many, and why approximate
    ('' where exact)."""

    path: Path
    kind: str  # downloads, sources, decoded cache, checkpoints, MLflow artifacts
    what: str
    bytes: int | None  # None: unknown
    approximate: str = ""


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def source_images(params: dict[str, Any], name: str) -> list[Path]:
    """The image files source ``name`` holds, or will hold, where they can be seen now: its
    folder, its ``local`` folder, or scikit-image's files; [] otherwise."""
    from drn.core.images import IMAGE_SUFFIXES

    spec = params["sources"].get(name) or {}
    folder = Path(params["paths"]["data"]) / name
    if not _has_files(folder) and spec.get("local"):
        folder = Path(spec["local"]) / (spec.get("member") or "")
    if _has_files(folder):
        return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if spec.get("skimage"):
        import skimage

        shipped = Path(skimage.__file__).parent / "data"
        return [shipped / n for n in spec["skimage"] if (shipped / n).is_file()]
    return []


def _pixels(images: list[Path]) -> int:
    """Pixels of ``images``, from their headers."""
    from PIL import Image

    total = 0
    for path in images:
        with Image.open(path) as image:
            total += image.width * image.height
    return total


def weights_bytes(params: dict[str, Any], variant: str, scale: int) -> int:
    """Bytes of a model's float32 weights (built on the meta device: no memory, no time)."""
    import torch

    from drn.pipeline.params import build_from_params

    with torch.device("meta"):
        model = build_from_params(params, variant, scale)
    return 4 * sum(p.numel() for p in model.parameters())


def disk_needs(params: dict[str, Any], plan: Any, online: bool = False,
               head: Callable[[str], tuple[int | None, int | None, str]] = head_request,
               weights: Callable[[dict, str, int], int] = weights_bytes) -> list[Need]:  # fmt: skip
    """Everything the plan will still write: downloads, extracted sources, the decoded cache of
    each scale trained at, and every run's checkpoints (and tracking artifacts)."""
    from drn.pipeline.settings import training_data

    data = Path(params["paths"]["data"])
    fetched, derived = needed_sources(params, plan)
    needs: list[Need] = []
    archives: dict[str, int | None] = {}
    source_bytes: dict[str, int | None] = {}
    for source in fetched:
        spec, folder = params["sources"][source], data / source
        if _has_files(folder):
            source_bytes[source] = _folder_bytes(folder)
            continue
        if "url" in spec:
            file = Path(urllib.parse.urlsplit(spec["url"]).path).name
            known, why = ARCHIVE_BYTES.get(spec.get("sha256") or ""), ""
            if known is None and file in APPROXIMATE_ARCHIVES:
                known, why = APPROXIMATE_ARCHIVES[file]
            if known is None and online:
                known = head(spec["url"])[1]
            if file not in archives:
                archives[file] = known
                done = (data / "downloads" / file).is_file()
                needs.append(Need(data / "downloads", "downloads", file, 0 if done else known,
                                  why))  # fmt: skip
                extracted = "extracted: at most the archive (PNGs barely compress)"
                needs.append(Need(data / source, "sources", f"{file} extracted", known, extracted))
            source_bytes[source] = known
        elif "local" in spec and spec["local"] and Path(spec["local"]).exists():
            local = Path(spec["local"])
            size = _folder_bytes(local) if local.is_dir() else local.stat().st_size
            needs.append(Need(data / source, "sources", f"{source} copied", size))
            source_bytes[source] = size
        elif "skimage" in spec:
            size = sum(p.stat().st_size for p in source_images(params, source))
            why = "scikit-image's files, written as PNG"
            needs.append(Need(data / source, "sources", source, size, why))
            source_bytes[source] = size
    for source in derived:
        spec, folder = params["downscaled"][source], data / source
        of = source_bytes.get(spec["of"])
        if not _has_files(folder):
            size = of // spec["scale"] ** 2 if of else None
            why = "downscaled: 1/scale^2 of its source"
            needs.append(Need(folder, "sources", source, size, why))
    for scale in sorted({run.scale for run in plan.runs}):
        hr, _, cache, _ = training_data(params, scale)
        if (Path(cache) / "manifest.json").is_file():
            continue
        hr_name = Path(hr).name
        images = source_images(params, hr_name)
        if images:
            pixels, why = _pixels(images), ""
        elif params["sources"].get(hr_name, {}).get("sha256") == DIV2K_TRAIN[0]:
            pixels = DIV2K_TRAIN[1]
            why = "800 DIV2K images of about 2040 x 1360 (their headers, once fetched, give it)"
        else:
            pixels, why = None, ""
        size = int(pixels * 3 * (1 + 1 / scale**2)) if pixels else None
        needs.append(Need(Path(cache), "decoded cache", f"decoded cache x{scale}", size, why))
    tracked = params["tracking"]["enabled"]
    uri = os.environ.get("MLFLOW_TRACKING_URI") or params["tracking"]["uri"]
    for run in plan.trained_runs():  # a milestone is a checkpoint of another run: 1 x size
        if (Path(run.directory) / "model.pt").is_file():
            continue
        size = weights(params, run.variant, run.scale)
        # model.pt, best.pt, and last.pt with Adam's two moments beside the weights
        needs.append(Need(Path(run.directory), "checkpoints", run.name,
                          (5 + len(run.milestones)) * size))  # fmt: skip
        if tracked and not uri.startswith(("http://", "https://")):
            needs.append(Need(Path("mlruns"), "MLflow artifacts", run.name, 2 * size,
                              "MLflow artifacts: model.pt and the exported model"))  # fmt: skip
    return needs


def check_disk(needs: list[Need], fs: Callable[[Path], tuple[str, str]] = filesystem,
               free: Callable[[Path], int] | None = None) -> list[Result]:  # fmt: skip
    """Per file system: free space against what the plan still writes there."""
    free = free or _free_bytes
    if not needs:
        return [Result("disk", OK, "everything the plan writes is already there")]
    groups: dict[str, list[Need]] = {}
    for need in needs:
        groups.setdefault(fs(need.path)[0], []).append(need)
    results = []
    for point, found in groups.items():
        kind = fs(found[0].path)[1]
        room = free(Path(point))
        known = sum(n.bytes or 0 for n in found)
        unknown = [n.what for n in found if n.bytes is None]
        parts: dict[str, int] = {}
        for n in found:
            parts[n.kind] = parts.get(n.kind, 0) + (n.bytes or 0)
        detail = ", ".join(f"{k} {_gb(v)}" for k, v in parts.items() if v)
        approximate = sorted({n.approximate for n in found if n.approximate and n.bytes})
        text = (f"{point} ({kind}): {_gb(room)} free; the plan still writes about {_gb(known)} "
                f"here ({detail or 'nothing'})")  # fmt: skip
        if approximate:
            text += "; approximate: " + "; ".join(approximate)
        if unknown:
            text += f"; not counted (size unknown, --online asks): {', '.join(unknown)}"
        name = f"disk:{point}"
        if known > room:
            results.append(Result(name, FAIL, text, f"free {_gb(known - room)} on {point}, or "
                                  "move paths.data / paths.runs / train.data.cache (params.yaml) "
                                  "to a file system with room"))  # fmt: skip
        elif known > 0.8 * room:
            results.append(Result(name, WARN, text, f"less than 20% to spare on {point}"))
        else:
            results.append(Result(name, OK, text))
    return results


def _free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


def _gb(value: int) -> str:
    return f"{value / 1e9:.1f} GB" if value >= 1e8 else f"{value / 1e6:.1f} MB"
