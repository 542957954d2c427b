"""Webhook targets are restricted (issue #3): no loopback, private or otherwise internal addresses
unless the county allows private targets."""
import pytest

from minqing.netpolicy import TargetRefused, check_target


def fake_dns(table):
    return lambda host, port: table.get(host, [])


DNS = fake_dns({"hooks.example.org": ["93.184.216.34"], "inside.example.org": ["10.1.2.3"],
                "sneaky.example.org": ["93.184.216.34", "127.0.0.1"], "v6.example.org": ["::ffff:192.168.1.9"],
                "meta.example.org": ["169.254.169.254"]})


def test_a_public_https_target_is_accepted():
    assert check_target("https://hooks.example.org/minqing", resolve=DNS) == ["93.184.216.34"]


@pytest.mark.parametrize("url, reason", [
    ("ftp://hooks.example.org/x", "http"),
    ("https://user:pw@hooks.example.org/x", "user name"),
    ("https://inside.example.org/x", "not a public address"),
    ("https://sneaky.example.org/x", "127.0.0.1"),
    ("https://v6.example.org/x", "192.168.1.9"),
    ("https://meta.example.org/x", "169.254.169.254"),
    ("http://127.0.0.1:8080/x", "not a public address"),
    ("http://[::1]/x", "not a public address"),
    ("https://nowhere.example.org/x", "does not resolve"),
    ("https://hooks.example.org:99999/x", "port"),
])
def test_internal_or_malformed_targets_are_refused(url, reason):
    resolve = DNS if "example.org" in url else (lambda host, port: [host])
    with pytest.raises(TargetRefused) as info:
        check_target(url, resolve=resolve)
    assert reason in str(info.value)


def test_a_county_may_allow_its_own_network_but_never_link_local():
    assert check_target("https://inside.example.org/x", allow_private=True, resolve=DNS) == ["10.1.2.3"]
    with pytest.raises(TargetRefused):
        check_target("https://meta.example.org/x", allow_private=True, resolve=DNS)
