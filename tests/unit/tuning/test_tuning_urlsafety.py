"""Input URL checks: scheme, and every resolved address must be public (unless tests allow it)."""
import pytest

from tuning.errors import UnsafeURLError
from tuning.urlsafety import address_problem, check_url, redact


def fixed(*addresses):
    return lambda host, port: tuple(addresses)


@pytest.mark.parametrize("url", ["ftp://example.com/data.csv", "file:///etc/passwd", "gs://bucket/x", "data.csv"])
def test_only_http_and_https(url):
    with pytest.raises(UnsafeURLError, match="accepted schemes: http, https"):
        check_url(url, resolve=fixed("93.184.216.34"))


@pytest.mark.parametrize("address,kind", [
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("10.1.2.3", "private"), ("192.168.1.1", "private"),
    ("172.16.0.5", "private"), ("169.254.169.254", "metadata"), ("169.254.10.10", "link-local"),
    ("fe80::1", "link-local"), ("::ffff:127.0.0.1", "loopback"), ("0.0.0.0", "unspecified"),
    ("100.100.100.200", "metadata"), ("fd00:ec2::254", "metadata"), ("100.64.0.1", "address"),
])
def test_non_public_addresses_are_refused(address, kind):
    with pytest.raises(UnsafeURLError) as err:
        check_url("https://data.example.com/train.parquet", resolve=fixed(address))
    assert kind in str(err.value) and address in str(err.value)


def test_every_resolved_address_is_checked():
    with pytest.raises(UnsafeURLError, match="10.0.0.7"):
        check_url("https://data.example.com/x.json", resolve=fixed("93.184.216.34", "10.0.0.7"))


def test_public_address_passes_and_private_is_allowed_only_by_flag():
    checked = check_url("https://data.example.com:8443/x.json?sig=abc", resolve=fixed("93.184.216.34"))
    assert checked.port == 8443 and checked.addresses == ("93.184.216.34",)
    assert address_problem("93.184.216.34") is None
    assert check_url("http://127.0.0.1:9/x.csv", allow_private=True).addresses == ("127.0.0.1",)


def test_real_resolution_of_localhost_is_refused():
    with pytest.raises(UnsafeURLError, match="loopback"):
        check_url("http://localhost/x.csv")


def test_redact_drops_credentials_and_query():
    assert redact("https://user:secret@h.example.com/a/b.parquet?token=xyz") == "https://h.example.com/a/b.parquet"
