from pathlib import Path

import pytest

from contract.urlpolicy import address_problem, is_http_url, is_internal_url, realm_host_problem


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


def test_alibaba_metadata_address_is_internal_at_admission_too():
    # 100.100.100.200 is in the shared address space, which ipaddress does not call private.
    assert is_internal_url("http://100.100.100.200/latest/meta-data")


@pytest.mark.parametrize(("address", "problem"), [
    ("8.8.8.8", None), ("2606:4700::1111", None),
    ("169.254.169.254", "a cloud metadata address"), ("100.100.100.200", "a cloud metadata address"),
    ("127.0.0.1", "a loopback address"), ("10.0.0.1", "a private address"), ("::ffff:10.0.0.1", "a private address"),
    ("0.0.0.0", "a unspecified address"), ("224.0.0.1", "a multicast address"),
    ("100.64.0.1", "not a public address"),
])
def test_fetch_strength_admits_only_public_unicast(address, problem):
    assert address_problem(address) == problem


@pytest.mark.parametrize(("host", "refused"), [
    ("10.0.0.5", False), ("registry.internal", False), ("192.168.1.10", False), ("127.0.0.1", False),
    ("169.254.169.254", True), ("metadata.google.internal", True), ("fe80::1", True), ("0.0.0.0", True),
    ("224.0.0.1", True),
])
def test_realm_strength_allows_private_registries_but_not_metadata(host, refused):
    assert (realm_host_problem(host) is not None) is refused


def test_the_metadata_lists_live_in_one_module():
    root = Path(__file__).resolve().parents[3]
    holders = [str(p.relative_to(root)) for pkg in ("hooks", "serving", "tuning", "artifacts", "presets", "contract")
               for p in (root / pkg).rglob("*.py")
               if "metadata.google.internal" in p.read_text() or "169.254.169.254" in p.read_text()]
    assert holders == ["contract/urlpolicy.py"]
