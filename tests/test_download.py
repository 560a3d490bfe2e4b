"""Fetching sources: resumable verified downloads from a local server, safe extraction, local
copies, scikit-image images and MATLAB-bicubic LR sources."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from conftest import SET5, SET14_SAMPLES
from PIL import Image

from drn.core.errors import DataError, UsageError
from drn.core.images import modcrop, read_image
from drn.pipeline.download import extract, fetch
from drn.protocol.resize import imresize


class Server:
    """Serves bytes on 127.0.0.1 with HTTP Range support; can cut a response half way."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[dict] = []
        self.cut_next = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                body = server.files.get(self.path)
                server.requests.append({"path": self.path, "range": self.headers.get("Range")})
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                payload = body[start:]
                if server.cut_next:  # the connection drops half way
                    server.cut_next = False
                    self.wfile.write(payload[: len(payload) // 2])
                    self.wfile.flush()
                    self.connection.close()
                    return
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    running = Server()
    yield running
    running.close()


def benchmark_tar(names=("baby", "bird")) -> bytes:
    """A tar laid out like the EDSR benchmark archive, with real Set5 images."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as bundle:
        for name in names:
            bundle.add(SET5 / f"{name}.png", f"benchmark/Set5/HR/{name}.png")
            bundle.add(SET5 / f"{name}.png", f"benchmark/Set5/LR_bicubic/X2/{name}x2.png")
        bundle.add(SET14_SAMPLES / "bridge.png", "benchmark/Set14/HR/bridge.png")
    return buffer.getvalue()


def params_for(tmp_path, sources, downscaled=None):
    return {
        "paths": {
            "data": str(tmp_path / "data"),
            "sources_lock": str(tmp_path / "sources.lock.json"),
        },
        "sources": sources,
        "downscaled": downscaled or {},
    }


def test_sources_sharing_an_archive_get_their_own_folder(server, tmp_path):
    server.files["/benchmark.tar"] = benchmark_tar()
    url = server.url + "/benchmark.tar"
    params = params_for(tmp_path, {
        "Set5": {"url": url, "sha256": None, "member": "benchmark/Set5/HR"},
        "Set14": {"url": url, "sha256": None, "member": "benchmark/Set14/HR"},
    })  # fmt: skip
    set5, set14 = fetch("Set5", params), fetch("Set14", params)
    assert sorted(p.name for p in set5.iterdir()) == ["baby.png", "bird.png"]
    assert [p.name for p in set14.iterdir()] == ["bridge.png"]
    np.testing.assert_array_equal(read_image(set5 / "baby.png"), read_image(SET5 / "baby.png"))
    assert len(server.requests) == 1  # one download, verified and reused
    lock = json.loads((tmp_path / "sources.lock.json").read_text())
    assert lock == {url: hashlib.sha256(server.files["/benchmark.tar"]).hexdigest()}


def test_an_interrupted_download_resumes_with_a_range_request(server, tmp_path, capsys):
    body = benchmark_tar(("baby", "bird", "butterfly", "head", "woman"))
    server.files["/benchmark.tar"] = body
    spec = {"url": server.url + "/benchmark.tar", "sha256": hashlib.sha256(body).hexdigest(),
            "member": "benchmark/Set5/HR"}  # fmt: skip
    params = params_for(tmp_path, {"Set5": spec})
    server.cut_next = True
    with pytest.raises(DataError, match="broke off; run again to resume"):
        fetch("Set5", params)
    part = tmp_path / "data/downloads/benchmark.tar.part"
    assert 0 < part.stat().st_size < len(body)
    assert not (tmp_path / "data/Set5").exists()
    fetch("Set5", params)
    assert server.requests[-1]["range"] == f"bytes={len(body) // 2}-"
    assert (tmp_path / "data/downloads/benchmark.tar").read_bytes() == body
    assert len(list((tmp_path / "data/Set5").iterdir())) == 5


def test_a_checksum_mismatch_discards_the_download(server, tmp_path):
    server.files["/DIV2K_valid_HR.zip"] = b"not what was promised"
    spec = {"url": server.url + "/DIV2K_valid_HR.zip", "sha256": "0" * 64, "member": None}
    with pytest.raises(DataError, match=r"DIV2K_valid_HR\.zip: sha256 [0-9a-f]{64} does not match"):
        fetch("DIV2K_valid_HR", params_for(tmp_path, {"DIV2K_valid_HR": spec}))
    assert not list((tmp_path / "data/downloads").glob("DIV2K_valid_HR.zip*[!k]"))


def test_a_recorded_checksum_is_checked_on_later_downloads(server, tmp_path):
    server.files["/benchmark.tar"] = benchmark_tar()
    spec = {"url": server.url + "/benchmark.tar", "sha256": None, "member": "benchmark/Set5/HR"}
    params = params_for(tmp_path, {"Set5": spec})
    fetch("Set5", params)
    (tmp_path / "data/downloads/benchmark.tar").unlink()
    server.files["/benchmark.tar"] = benchmark_tar(("baby",))  # the server now has other bytes
    with pytest.raises(DataError, match="does not match the expected"):
        fetch("Set5", params)


def test_an_unreachable_server_names_the_url_and_the_local_alternative(tmp_path):
    url = "http://127.0.0.1:9/benchmark.tar"  # discard port: nothing listens
    spec = {"url": url, "sha256": None, "member": "benchmark/Set5/HR"}
    with pytest.raises(DataError) as error:
        fetch("Set5", params_for(tmp_path, {"Set5": spec}))
    assert (
        url in str(error.value)
        and "sources.Set5" in str(error.value)
        and "local" in str(error.value)
    )


def malicious_tar(kind: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as bundle:
        if kind == "symlink":
            info = tarfile.TarInfo("images/evil")
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            bundle.addfile(info)
        else:
            info = tarfile.TarInfo(
                {"dotdot": "../escaped.txt", "absolute": "/tmp/escaped.txt"}[kind]
            )
            info.size = 4
            bundle.addfile(info, io.BytesIO(b"evil"))
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_a_malicious_tar_is_refused(tmp_path, kind):
    archive = tmp_path / "evil.tar"
    archive.write_bytes(malicious_tar(kind))
    target = tmp_path / "target"
    with pytest.raises(DataError, match=r"evil\.tar: refused to extract"):
        extract(archive, target)
    assert not (tmp_path / "escaped.txt").exists()
    assert not any(p.is_symlink() for p in target.rglob("*")) if target.exists() else True


@pytest.mark.parametrize("name", ["../escaped.txt", "/abs/escaped.txt", "C:/escaped.txt"])
def test_a_malicious_zip_is_refused(tmp_path, name):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("fine.txt", "ok")
        bundle.writestr(name, "evil")
    with pytest.raises(DataError, match=r"evil\.zip: refused to extract"):
        extract(archive, tmp_path / "target")
    assert not (tmp_path / "target").exists() and not (tmp_path / "escaped.txt").exists()


def test_a_malicious_archive_served_over_http_leaves_nothing(server, tmp_path):
    server.files["/evil.tar"] = malicious_tar("dotdot")
    spec = {"url": server.url + "/evil.tar", "sha256": None, "member": None}
    with pytest.raises(DataError, match="refused to extract"):
        fetch("evil", params_for(tmp_path, {"evil": spec}))
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["downloads"]


def test_local_folders_and_archives_are_sources(tmp_path):
    folder = tmp_path / "Manga109"
    folder.mkdir()
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(folder / "page.png")
    archive = tmp_path / "bench.tar"
    archive.write_bytes(benchmark_tar())
    params = params_for(tmp_path, {
        "Manga109": {"local": str(folder), "member": None},
        "Set5": {"local": str(archive), "member": "benchmark/Set5/HR"},
        "missing": {"local": None, "member": None},
    })  # fmt: skip
    assert [p.name for p in fetch("Manga109", params).iterdir()] == ["page.png"]
    assert sorted(p.name for p in fetch("Set5", params).iterdir()) == ["baby.png", "bird.png"]
    with pytest.raises(UsageError, match=r"sources\.missing\.local: set it to your copy"):
        fetch("missing", params)


def test_skimage_and_downscaled_sources(tmp_path):
    params = params_for(
        tmp_path,
        {"photos": {"skimage": ["astronaut.png", "camera.png"]}},
        {"photos_x3": {"of": "photos", "scale": 3}},
    )
    photos = fetch("photos", params)
    assert sorted(p.name for p in photos.iterdir()) == ["astronaut.png", "camera.png"]
    low = fetch("photos_x3", params)
    assert sorted(p.name for p in low.iterdir()) == ["astronautx3.png", "camerax3.png"]
    expected = imresize(modcrop(read_image(photos / "camera.png"), 3), 1 / 3)
    np.testing.assert_array_equal(read_image(low / "camerax3.png"), expected)
    with pytest.raises(UsageError, match="unknown source 'nope'"):
        fetch("nope", params)


def test_a_refetch_replaces_the_folder_whole(tmp_path):
    params = params_for(tmp_path, {"photos": {"skimage": ["camera.png"]}})
    fetch("photos", params)
    (tmp_path / "data/photos/stale.png").write_bytes(b"x")
    fetch("photos", params)
    assert [p.name for p in Path(tmp_path / "data/photos").iterdir()] == ["camera.png"]
