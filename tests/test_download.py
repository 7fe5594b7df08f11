"""Dataset download against a local HTTP server: resume, mirrors, checksums, offline hints."""

from __future__ import annotations

import hashlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from galaxymorph.data import download as dl
from galaxymorph.data.download import download, part_path
from galaxymorph.errors import DataError

PAYLOAD = np.random.default_rng(7).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
FAST = {"progress": False, "backoff": 0.0, "timeout": 5, "chunk_size": 16_384}


@dataclass
class ServerState:
    """What the handler serves and what it saw; tests tweak it before downloading."""

    data: bytes = PAYLOAD
    drop_after: int | None = None  # close the connection after this many body bytes...
    drops_left: int = 1  # ...on this many requests
    ignore_range: bool = False
    missing: set[str] = field(default_factory=set)  # paths answered with 404
    requests: list[dict[str, str]] = field(default_factory=list)


def _handler(state: ServerState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # keep pytest output clean
            pass

        def do_GET(self) -> None:
            state.requests.append({"path": self.path, **dict(self.headers)})
            if self.path in state.missing:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data, start = state.data, 0
            rng = self.headers.get("Range")
            if rng and not state.ignore_range:
                start = int(rng.removeprefix("bytes=").split("-")[0])
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            if state.drop_after is not None and state.drops_left > 0:
                state.drops_left -= 1
                self.wfile.write(body[: state.drop_after])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(body)

    return Handler


@pytest.fixture
def server() -> Iterator[tuple[str, ServerState]]:
    state = ServerState()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    # A proxy from the environment would swallow requests to 127.0.0.1.
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GALAXYMORPH_HOME", str(tmp_path / "home"))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_full_download_to_default_path_then_already_present(server, tmp_path):
    url, state = server
    path = download("galaxy10-decals", urls=[f"{url}/g.h5"], sha256=PAYLOAD_SHA, **FAST)
    assert path == tmp_path / "home" / "data" / "Galaxy10_DECals.h5"
    assert path.read_bytes() == PAYLOAD
    assert not part_path(path).exists()
    assert "Range" not in state.requests[0]
    assert state.requests[0].get("Accept-Encoding") == "identity"

    n = len(state.requests)
    assert download("galaxy10-decals", urls=[f"{url}/g.h5"], sha256=PAYLOAD_SHA, **FAST) == path
    assert len(state.requests) == n  # verified locally, nothing fetched


def test_plain_url_into_folder_with_progress_bar(server, tmp_path):
    url, _ = server
    path = download(f"{url}/files/blob.bin", tmp_path, sha256=PAYLOAD_SHA.upper(),
                    progress=True, backoff=0.0)
    assert path == tmp_path / "blob.bin"
    assert path.read_bytes() == PAYLOAD


def test_resumes_after_dropped_connection(server, tmp_path):
    url, state = server
    state.drop_after = 100_000
    dest = tmp_path / "f.bin"
    assert download(f"{url}/f.bin", dest, sha256=PAYLOAD_SHA, **FAST) == dest
    assert dest.read_bytes() == PAYLOAD
    assert len(state.requests) == 2
    assert "Range" not in state.requests[0]
    first = int(state.requests[1]["Range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < first <= 100_000


def test_resumes_part_file_left_by_earlier_run(server, tmp_path):
    url, state = server
    dest = tmp_path / "f.bin"
    part_path(dest).write_bytes(PAYLOAD[:123_456])
    download(f"{url}/f.bin", dest, sha256=PAYLOAD_SHA, **FAST)
    assert state.requests[0]["Range"] == "bytes=123456-"
    assert dest.read_bytes() == PAYLOAD


def test_complete_part_file_gets_416_and_is_finished(server, tmp_path):
    url, state = server
    dest = tmp_path / "f.bin"
    part_path(dest).write_bytes(PAYLOAD)
    download(f"{url}/f.bin", dest, sha256=PAYLOAD_SHA, **FAST)
    assert state.requests[0]["Range"] == f"bytes={len(PAYLOAD)}-"
    assert dest.read_bytes() == PAYLOAD and not part_path(dest).exists()


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    url, state = server
    state.ignore_range = True
    dest = tmp_path / "f.bin"
    part_path(dest).write_bytes(b"x" * 50_000)  # not even the right bytes: must be overwritten
    download(f"{url}/f.bin", dest, sha256=PAYLOAD_SHA, **FAST)
    assert "Range" in state.requests[0]
    assert dest.read_bytes() == PAYLOAD


def test_checksum_mismatch_keeps_part_and_says_so(server, tmp_path):
    url, _ = server
    dest = tmp_path / "f.bin"
    with pytest.raises(DataError) as err:
        download(f"{url}/f.bin", dest, sha256="0" * 64, **FAST)
    text = str(err.value)
    part = part_path(dest)
    assert "0" * 64 in text and PAYLOAD_SHA in text
    assert str(part) in text and "rm " in text
    assert part.read_bytes() == PAYLOAD
    assert not dest.exists()


def test_existing_final_file_with_wrong_checksum_is_not_overwritten(tmp_path):
    dest = tmp_path / "f.bin"
    dest.write_bytes(b"something else")
    with pytest.raises(DataError, match="expected"):
        download("http://127.0.0.1:9/f.bin", dest, sha256=PAYLOAD_SHA, **FAST)
    assert dest.read_bytes() == b"something else"


def test_no_server_gives_hand_placement_hint(tmp_path):
    port = _closed_port()
    urls = [f"http://127.0.0.1:{port}/a/Galaxy10_DECals.h5", f"http://127.0.0.1:{port}/b/G.h5"]
    with pytest.raises(DataError) as err:
        download("galaxy10-decals", urls=urls, **FAST)
    text = str(err.value)
    assert "offline" in text
    for u in urls:
        assert u in text
    assert "Galaxy10_DECals.h5" in text
    assert str(tmp_path / "home" / "data") in text and "$GALAXYMORPH_HOME/data/" in text
    assert "galaxy10-decals:/path/to/Galaxy10_DECals.h5" in text


def test_mirror_fallback_after_404(server, tmp_path):
    url, state = server
    state.missing = {"/gone.bin"}
    dest = tmp_path / "f.bin"
    download(f"{url}/f.bin", dest, sha256=PAYLOAD_SHA, urls=[f"{url}/gone.bin", f"{url}/ok.bin"],
             **FAST)
    assert [r["path"] for r in state.requests] == ["/gone.bin", "/ok.bin"]
    assert dest.read_bytes() == PAYLOAD


def test_gives_up_after_retries(server, tmp_path):
    url, state = server
    state.drop_after, state.drops_left = 0, 99  # headers, then nothing, every time
    dest = tmp_path / "f.bin"
    with pytest.raises(DataError, match="3 times in a row"):
        download(f"{url}/f.bin", dest, sha256=PAYLOAD_SHA, retries=2, **FAST)
    assert len(state.requests) == 3
    assert not dest.exists()


def test_unknown_name_and_bad_checksum_rejected():
    with pytest.raises(DataError, match="unknown dataset"):
        download("galaxy11", **FAST)
    with pytest.raises(DataError, match="SHA-256"):
        download("galaxy10-sdss", sha256="abc", **FAST)


def test_sha256_file_prefix(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(PAYLOAD)
    assert dl.sha256_file(p).hexdigest() == PAYLOAD_SHA
    assert dl.sha256_file(p, limit=1000).hexdigest() == hashlib.sha256(PAYLOAD[:1000]).hexdigest()
