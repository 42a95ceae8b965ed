"""`cs336 data fetch` against a local HTTP server: download, resume, checksums, mirror, offline."""

import gzip
import hashlib
import http.server
import socket
import threading

import pytest

from cs336.cli import main
from cs336.data import fetch as fetch_module
from cs336.data.registry import Corpus, RemoteFile
from cs336.errors import CS336Error

BODY = bytes(range(256)) * 2000 + b"tail"  # 512,004 bytes: several read chunks


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves BODY at /corpus.txt, honouring `Range: bytes=N-` unless the server says not to; can
    cut the connection after `drop_after` bytes. Records the Range headers it saw."""

    def do_GET(self):
        srv = self.server
        srv.ranges.append(self.headers.get("Range"))
        if self.path != "/corpus.txt":
            self.send_error(404)
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and srv.honour_range:
            start = int(rng.removeprefix("bytes=").rstrip("-"))
            if start >= len(BODY):
                self.send_response(416)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(BODY) - 1}/{len(BODY)}")
        else:
            self.send_response(200)
        body = BODY[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.drop_after is not None:
            self.wfile.write(body[: srv.drop_after])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)

    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.ranges, srv.honour_range, srv.drop_after = [], True, None
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/corpus.txt"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _remote(url, sha256=None, name="corpus.txt"):
    return RemoteFile(name, url, sha256)


def _closed_port_url():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens here: connections are refused at once
    return f"http://127.0.0.1:{port}/corpus.txt"


def test_download_writes_the_file_atomically_and_records_its_digest(server, tmp_path):
    path = fetch_module.fetch_file(_remote(server.url), tmp_path, progress=False)
    assert path.read_bytes() == BODY
    assert not (tmp_path / "corpus.txt.part").exists()
    digest = hashlib.sha256(BODY).hexdigest()
    assert (tmp_path / "corpus.txt.sha256").read_text() == f"{digest}  corpus.txt\n"
    assert server.ranges == [None]
    fetch_module.fetch_file(_remote(server.url), tmp_path, progress=False)  # present and verified
    assert len(server.ranges) == 1


def test_download_resumes_a_truncated_part_file_with_a_range_request(server, tmp_path):
    (tmp_path / "corpus.txt.part").write_bytes(BODY[:100_000])
    sha = hashlib.sha256(BODY).hexdigest()
    path = fetch_module.fetch_file(_remote(server.url, sha), tmp_path, progress=False)
    assert server.ranges == ["bytes=100000-"]
    assert path.read_bytes() == BODY


def test_dropped_connection_keeps_the_part_and_the_next_run_finishes(server, tmp_path):
    server.drop_after = 200_000
    with pytest.raises(CS336Error, match="stopped at 200,000 of 512,004 bytes; run the command again"):
        fetch_module.fetch_file(_remote(server.url), tmp_path, progress=False)
    assert (tmp_path / "corpus.txt.part").stat().st_size == 200_000 and not (tmp_path / "corpus.txt").exists()
    server.drop_after = None
    path = fetch_module.fetch_file(_remote(server.url), tmp_path, progress=False)
    assert server.ranges[-1] == "bytes=200000-" and path.read_bytes() == BODY


def test_server_without_range_support_restarts_the_file(server, tmp_path):
    server.honour_range = False
    (tmp_path / "corpus.txt.part").write_bytes(b"stale bytes from elsewhere")
    path = fetch_module.fetch_file(_remote(server.url, hashlib.sha256(BODY).hexdigest()), tmp_path, progress=False)
    assert path.read_bytes() == BODY


def test_complete_part_file_is_finished_without_downloading(server, tmp_path):
    (tmp_path / "corpus.txt.part").write_bytes(BODY)
    path = fetch_module.fetch_file(_remote(server.url, hashlib.sha256(BODY).hexdigest()), tmp_path, progress=False)
    assert server.ranges == [f"bytes={len(BODY)}-"] and path.read_bytes() == BODY


def test_checksum_mismatch_is_an_error_and_leaves_no_file(server, tmp_path):
    with pytest.raises(CS336Error, match="checksum mismatch for corpus.txt: expected sha256 0000"):
        fetch_module.fetch_file(_remote(server.url, "0" * 64), tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_recorded_digest_is_checked_on_the_next_fetch(server, tmp_path):
    (tmp_path / "corpus.txt.sha256").write_text(f"{'1' * 64}  corpus.txt\n")
    with pytest.raises(CS336Error, match="corpus.txt.sha256 records 1111"):
        fetch_module.fetch_file(_remote(server.url), tmp_path, progress=False)
    assert not (tmp_path / "corpus.txt").exists()


def test_offline_is_a_one_line_error(tmp_path):
    with pytest.raises(CS336Error, match=r"cannot reach 127\.0\.0\.1:\d+ .*--mirror DIR") as e:
        fetch_module.fetch_file(_remote(_closed_port_url()), tmp_path, progress=False)
    assert "\n" not in str(e.value)


def test_http_error_is_a_one_line_error(server, tmp_path):
    with pytest.raises(CS336Error, match="HTTP 404"):
        fetch_module.fetch_file(_remote(server.url.replace("corpus.txt", "missing.txt")), tmp_path, progress=False)


@pytest.fixture
def fake_corpus(monkeypatch):
    """Points the `owt` corpus at two files (one gzip) served from `url_base`."""

    def install(url_base, sha=None):
        files = (RemoteFile("owt_train.txt.gz", f"{url_base}/owt_train.txt.gz", sha), RemoteFile("owt_valid.txt", f"{url_base}/owt_valid.txt"))
        monkeypatch.setitem(fetch_module.CORPORA, "owt", Corpus("owt", files))

    return install


def test_mirror_copies_files_as_they_are(tmp_path, fake_corpus):
    mirror, dest = tmp_path / "mirror", tmp_path / "dest"
    mirror.mkdir()
    gz = gzip.compress(b"some web text\n" * 100)
    (mirror / "owt_train.txt.gz").write_bytes(gz)
    (mirror / "owt_valid.txt").write_bytes(b"valid text\n")
    fake_corpus(_closed_port_url().rsplit("/", 1)[0], sha=hashlib.sha256(gz).hexdigest())
    paths = fetch_module.fetch("owt", mirror=mirror, dest=dest, progress=False)
    assert [p.name for p in paths] == ["owt_train.txt.gz", "owt_valid.txt"]
    assert (dest / "owt_train.txt.gz").read_bytes() == gz  # still gzip, byte for byte
    assert (dest / "owt_valid.txt").read_bytes() == b"valid text\n"
    assert (dest / "owt_valid.txt.sha256").exists() and not (dest / "owt_train.txt.gz.sha256").exists()


def test_mirror_missing_a_file_names_it(tmp_path, fake_corpus):
    fake_corpus("http://127.0.0.1:9")
    (tmp_path / "mirror").mkdir()
    with pytest.raises(CS336Error, match="owt_train.txt.gz not found in mirror"):
        fetch_module.fetch("owt", mirror=tmp_path / "mirror", dest=tmp_path / "dest", progress=False)


def test_cli_offline_prints_one_line_and_exits_2(tmp_path, fake_corpus, capsys):
    fake_corpus(_closed_port_url().rsplit("/", 1)[0])
    assert main(["data", "fetch", "owt", "--dest", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot reach 127.0.0.1:") and err.count("\n") == 1 and "Traceback" not in err


def test_cli_fetch_downloads_into_the_data_dir(server, tmp_path, monkeypatch):
    base = server.url.rsplit("/", 1)[0]
    files = (RemoteFile("TinyStoriesV2-GPT4-valid.txt", f"{base}/corpus.txt"),)
    monkeypatch.setitem(fetch_module.CORPORA, "tinystories", Corpus("tinystories", files))
    monkeypatch.setenv("CS336_DATA_DIR", str(tmp_path))
    assert main(["data", "fetch", "tinystories"]) == 0
    assert (tmp_path / "TinyStoriesV2-GPT4-valid.txt").read_bytes() == BODY
