"""Webhook URLs: what may be registered and called, and the address a send is pinned to."""

from __future__ import annotations

import pytest

from services.delivery.urls import UrlRefused, check_syntax, vet


@pytest.mark.parametrize(("url", "says"), [
    ("ftp://example.com/x", "only http:// and https://"),
    ("example.com/hook", "only http:// and https://"),
    ("https:///nohost", "no host"),
    ("https://user:pw@example.com/h", "user name or password"),
    ("https://example.com:99999/h", "not a URL"),
    ("https://example.com/" + "a" * 2100, "longer than"),
])
def test_malformed_urls_are_refused_with_the_reason(url: str, says: str) -> None:
    with pytest.raises(UrlRefused, match=says) as refused:
        check_syntax(url)
    assert refused.value.code == "invalid_url"


@pytest.mark.parametrize(("url", "why"), [
    ("http://127.0.0.1:8080/h", "loopback"),
    ("http://localhost/h", "loopback"),
    ("http://10.1.2.3/h", "private"),
    ("http://192.168.0.10/h", "private"),
    ("http://169.254.169.254/latest/meta-data", "link-local"),
    ("http://[::1]/h", "loopback"),
    ("http://[::ffff:127.0.0.1]/h", "loopback"),
    ("http://[fd00::1]/h", "private"),
    ("http://100.64.0.1/h", "not on the public internet"),
    ("http://0.0.0.0/h", "private-network"),
])
async def test_addresses_off_the_public_internet_are_refused(url: str, why: str) -> None:
    with pytest.raises(UrlRefused, match=why) as refused:
        await vet(url, allow_private=False, timeout_s=5)
    assert refused.value.code == "url_not_allowed" and not refused.value.temporary
    assert "LIKENESS_WEBHOOK_ALLOW_PRIVATE" in str(refused.value)


async def test_development_may_allow_private_addresses() -> None:
    target = await vet("http://127.0.0.1:8080/h?x=1", allow_private=True, timeout_s=5)
    assert target.url == "http://127.0.0.1:8080/h?x=1" and target.host_header == "127.0.0.1:8080"


async def test_a_send_connects_to_the_checked_address_keeping_host_and_tls_name() -> None:
    target = await vet("https://8.8.8.8/hook?a=b", allow_private=False, timeout_s=5)
    assert (target.url, target.host_header, target.server_name) == ("https://8.8.8.8/hook?a=b", "8.8.8.8", "8.8.8.8")
    v6 = await vet("http://[2001:4860:4860::8888]:8080/", allow_private=False, timeout_s=5)
    assert v6.url == "http://[2001:4860:4860::8888]:8080/" and v6.server_name is None


async def test_a_host_that_does_not_resolve_is_refused_as_temporary() -> None:
    with pytest.raises(UrlRefused) as refused:
        await vet("https://no-such-host.invalid/h", allow_private=False, timeout_s=5)
    assert refused.value.code == "url_unresolvable" and refused.value.temporary
