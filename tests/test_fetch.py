"""``compbench data fetch``: verified downloads, served here from a loopback HTTP server."""

import hashlib
import http.server
import threading

import pytest

from compbench.errors import FetchError
from compbench.fetch import SOURCES, Source, fetch


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(root), **k)

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_fetch_verifies_and_writes(server, tmp_path):
    root, url = server
    payload = b"First Citizen:\nBefore we proceed any further, hear me speak.\n" * 100
    (root / "input.txt").write_bytes(payload)
    sources = {"tinyshakespeare": [Source(url + "input.txt",
                                          {"tinyshakespeare/input.txt": hashlib.sha256(payload).hexdigest()})]}
    data = tmp_path / "data"
    written = fetch("tinyshakespeare", data, sources=sources, progress=None)
    assert written == [data / "tinyshakespeare" / "input.txt"]
    assert written[0].read_bytes() == payload


def test_checksum_mismatch_writes_nothing(server, tmp_path):
    root, url = server
    (root / "input.txt").write_bytes(b"tampered")
    sources = {"tinyshakespeare": [Source(url + "input.txt", {"tinyshakespeare/input.txt": "0" * 64})]}
    with pytest.raises(FetchError, match="checksum mismatch"):
        fetch("tinyshakespeare", tmp_path / "data", sources=sources, progress=None)
    assert not (tmp_path / "data").exists()


def test_offline_and_missing_files_fail_clearly(server, tmp_path):
    _, url = server
    offline = {"canterbury": [Source("http://127.0.0.1:9/cantrbry.tar.gz", {"canterbury/cantrbry.tar.gz": "0" * 64})]}
    with pytest.raises(FetchError, match="Are you offline"):
        fetch("canterbury", tmp_path, sources=offline, progress=None)
    missing = {"canterbury": [Source(url + "nope.tar.gz", {"canterbury/cantrbry.tar.gz": "0" * 64})]}
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch("canterbury", tmp_path, sources=missing, progress=None)
    with pytest.raises(FetchError, match="no public download"):
        fetch("icelandic", tmp_path)
    with pytest.raises(FetchError, match="unknown corpus"):
        fetch("nosuch", tmp_path)


def test_every_fetch_source_pins_a_checksum_for_every_file():
    for name, sources in SOURCES.items():
        for src in sources:
            assert src.outputs and all(len(h) == 64 for h in src.outputs.values()), name
