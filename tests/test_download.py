"""download_voc against an HTTP server on 127.0.0.1 serving a small tar."""

from __future__ import annotations

import hashlib
import http.server
import time

import pytest

from hf_segcompare.data import DataError, generate_synthetic_voc, load_voc, write_voc_tar
from hf_segcompare.data.download import download_voc

from .local_server import LocalServer

# in the fast subset, which CI also runs on constraints/minimum.txt (the declared lower bounds)
pytestmark = pytest.mark.fast


class TarServer(LocalServer):
    """Serves one payload at /VOC.tar with Range support; records every request's Range header."""

    def __init__(self, payload: bytes, honour_range: bool = True):
        self.payload, self.honour_range, self.ranges, self.bytes_sent = payload, honour_range, [], 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path != "/VOC.tar":
                    self.send_error(404)
                    return
                requested = self.headers.get("Range")
                server.ranges.append(requested)
                start = int(requested.split("=")[1].rstrip("-")) if requested and server.honour_range else 0
                body = server.payload[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body)))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(server.payload) - 1}/{len(server.payload)}")
                self.end_headers()
                server.bytes_sent += len(body)  # before the write: the client may be done before it returns
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        super().__init__(Handler)
        self.url = f"{self.base_url}/VOC.tar"


@pytest.fixture(scope="module")
def small_tar(tmp_path_factory):
    root = tmp_path_factory.mktemp("src")
    generate_synthetic_voc(root, num_train=4, num_val=3, min_size=32, max_size=40)
    payload = write_voc_tar(root, root / "voc.tar").read_bytes()
    return payload, hashlib.md5(payload).hexdigest()


def test_download_verifies_and_the_tar_loads(small_tar, tmp_path):
    payload, md5 = small_tar
    with TarServer(payload) as server:
        path = download_voc(tmp_path, url=server.url, md5=md5, progress=False)
        assert path.read_bytes() == payload and server.ranges == [None]
        # Verified once: a second call neither downloads nor needs the server.
        assert download_voc(tmp_path, url=server.url, md5=md5) == path and len(server.ranges) == 1
    assert len(load_voc(path, cache_dir=tmp_path / "cache")["validation"]) == 3


def test_a_tar_put_there_by_hand_is_hashed_once(small_tar, tmp_path, monkeypatch):
    payload, md5 = small_tar
    (tmp_path / "VOCtrainval_11-May-2012.tar").write_bytes(payload)
    path = download_voc(tmp_path, url="http://127.0.0.1:9/none", md5=md5, progress=False)  # verified, not fetched

    def no_second_hash(*args):
        raise AssertionError("a verified tar was hashed again")

    monkeypatch.setattr("hf_segcompare.data.download.file_md5", no_second_hash)
    assert download_voc(tmp_path, url="http://127.0.0.1:9/none", md5=md5) == path


def test_download_resumes_a_partial_file(small_tar, tmp_path):
    payload, md5 = small_tar
    half = len(payload) // 2
    (tmp_path / "VOCtrainval_11-May-2012.tar.part").write_bytes(payload[:half])
    with TarServer(payload) as server:
        path = download_voc(tmp_path, url=server.url, md5=md5, progress=False)
    assert server.ranges == [f"bytes={half}-"] and server.bytes_sent == len(payload) - half
    assert path.read_bytes() == payload
    assert not (tmp_path / "VOCtrainval_11-May-2012.tar.part").exists()


def test_a_server_that_ignores_the_range_restarts_cleanly(small_tar, tmp_path):
    payload, md5 = small_tar
    (tmp_path / "VOCtrainval_11-May-2012.tar.part").write_bytes(b"garbage that must not stay")
    with TarServer(payload, honour_range=False) as server:
        path = download_voc(tmp_path, url=server.url, md5=md5, progress=False)
    assert path.read_bytes() == payload


def test_a_wrong_checksum_is_refused_and_nothing_is_kept(small_tar, tmp_path):
    payload, _ = small_tar
    with TarServer(payload) as server, pytest.raises(DataError, match="has MD5 .* expected 0{32}"):
        download_voc(tmp_path, url=server.url, md5="0" * 32, progress=False)
    assert not list(tmp_path.glob("VOCtrainval*"))


def test_an_unreachable_host_fails_at_once_saying_where_to_put_the_tar(tmp_path):
    with TarServer(b"") as server:
        url = server.url  # a port that was open a moment ago and is closed now
    started = time.monotonic()
    with pytest.raises(DataError, match=rf"cannot reach .*put it at {tmp_path}/VOCtrainval_11-May-2012\.tar"):
        download_voc(tmp_path, url=url, md5="0" * 32, progress=False)
    assert time.monotonic() - started < 10
