import pytest

from hooks.urls import is_http_url, is_internal_url


@pytest.mark.parametrize("url", [
    "http://localhost/x", "http://api.localhost/x", "http://127.0.0.1:8080/", "http://10.1.2.3/",
    "http://172.20.0.1/", "http://192.168.1.1/", "http://169.254.169.254/latest/meta-data",
    "http://metadata.google.internal/computeMetadata/v1/", "http://[::1]/", "http://[fe80::1]/", "http://0.0.0.0/",
])
def test_internal_addresses_are_refused(url):
    assert is_internal_url(url)


@pytest.mark.parametrize("url", ["https://huggingface.co/datasets/x/resolve/main/a.parquet", "http://93.184.216.34/a", "https://172.32.0.1/"])
def test_public_addresses_pass(url):
    assert not is_internal_url(url)


@pytest.mark.parametrize(("url", "ok"), [
    ("https://example.com/a", True), ("ftp://example.com/a", False), ("file:///etc/passwd", False),
    ("https://user:pw@example.com/a", False), ("https:///nohost", False), ("example.com/a", False),
])
def test_http_scheme_and_host(url, ok):
    assert is_http_url(url) is ok
