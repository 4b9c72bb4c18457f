"""Downloading input URLs from a real HTTP server on 127.0.0.1 (allowed only through the test flag)."""
import logging

import pytest

from tuning.download import download_urls
from tuning.errors import DownloadError, UnsafeURLError


def test_download_keeps_bytes_and_a_safe_name(data_server, tmp_path):
    url = data_server.url("train-00000-of-00001.parquet") + "?download=true&sig=secret"
    [path] = download_urls([url], tmp_path / "data", allow_private=True)
    assert path.name == "000-train-00000-of-00001.parquet"
    assert path.read_bytes() == (data_server.root / "train-00000-of-00001.parquet").read_bytes()


def test_loopback_is_refused_without_the_test_flag(data_server, tmp_path):
    with pytest.raises(UnsafeURLError, match="127.0.0.1, a loopback address"):
        download_urls([data_server.url("train.jsonl")], tmp_path / "data")
    assert not (tmp_path / "data").exists()


def test_transient_errors_are_retried_with_backoff(data_server, tmp_path, caplog):
    data_server.fail_next("train.jsonl", 2)
    with caplog.at_level(logging.WARNING, logger="tuning.download"):
        [path] = download_urls([data_server.url("train.jsonl")], tmp_path, allow_private=True, backoff_seconds=0.01)
    assert path.stat().st_size > 0
    assert sum("retrying" in r.getMessage() for r in caplog.records) == 2


def test_giving_up_after_the_attempts(data_server, tmp_path):
    data_server.fail_next("train.jsonl", 5)
    with pytest.raises(DownloadError, match="failed after 3 attempts: HTTP 503"):
        download_urls([data_server.url("train.jsonl")], tmp_path, allow_private=True, backoff_seconds=0.01)
    data_server.fail_next("train.jsonl", 0)


def test_not_found_is_not_retried(data_server, tmp_path):
    with pytest.raises(DownloadError, match="answered HTTP 404"):
        download_urls([data_server.url("missing.parquet")], tmp_path, allow_private=True, backoff_seconds=0.01)
    assert data_server.hits["/missing.parquet"] == 1


def test_size_limit_and_empty_body(data_server, tmp_path):
    with pytest.raises(DownloadError, match="over the limit of 100 bytes"):
        download_urls([data_server.url("train.jsonl")], tmp_path, allow_private=True, max_bytes=100)
    with pytest.raises(DownloadError, match="empty body"):
        download_urls([data_server.url("empty.csv")], tmp_path, allow_private=True)
    assert list(tmp_path.iterdir()) == []  # no partial files left behind


def test_redirects_are_followed_and_checked(data_server, tmp_path):
    [path] = download_urls([data_server.url("redirect/train.jsonl")], tmp_path, allow_private=True)
    assert path.read_bytes() == (data_server.root / "train.jsonl").read_bytes()
    with pytest.raises(UnsafeURLError, match="scheme 'ftp'"):
        download_urls([data_server.url("redirect/to-ftp")], tmp_path, allow_private=True)


def test_https_connects_to_the_checked_address_and_still_verifies_the_name(tmp_path, monkeypatch):
    """The request goes to the address check_url approved (no second DNS lookup to rebind), while
    TLS still verifies the certificate against the URL's host name."""
    import http.server
    import socket
    import ssl
    import subprocess
    import threading

    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,DNS:data.example", "-keyout", str(tmp_path / "key.pem"),
                    "-out", str(tmp_path / "cert.pem")], check=True, capture_output=True)
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "train.jsonl").write_text('{"text": "over tls"}\n')

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(tmp_path / "www"), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    trust = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))

    # data.example resolves (once, in the check) to the local server; nothing else may resolve it again.
    lookups = []
    real_getaddrinfo = socket.getaddrinfo

    def fake_getaddrinfo(host, *args, **kwargs):
        lookups.append(host)
        if host == "data.example":
            return real_getaddrinfo("127.0.0.1", *args, **kwargs)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    try:
        [path] = download_urls([f"https://data.example:{port}/train.jsonl"], tmp_path / "dl", allow_private=True,
                               verify=trust)
        assert path.read_text() == '{"text": "over tls"}\n'
        assert lookups.count("data.example") == 2  # the up-front check and the per-hop check; no client lookup
        with pytest.raises(DownloadError, match="CERTIFICATE_VERIFY_FAILED"):
            download_urls([f"https://127.0.0.1:{port}/train.jsonl"], tmp_path / "dl2", allow_private=True,
                          verify=trust, attempts=1)
    finally:
        server.shutdown()
        server.server_close()
