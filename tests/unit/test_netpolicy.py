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


@pytest.mark.parametrize("host, inside", [
    ("[::7f00:1]", "127.0.0.1"),               # IPv4-compatible
    ("[::ffff:0:7f00:1]", "127.0.0.1"),        # IPv4-translated
    ("[64:ff9b::a9fe:a9fe]", "169.254.169.254"),   # NAT64 well-known prefix
    ("[64:ff9b:1::a00:1]", "10.0.0.1"),        # NAT64 local-use prefix
    ("[2002:a9fe:a9fe::]", "169.254.169.254"),     # 6to4
    ("[::ffff:7f00:1]", "127.0.0.1"),          # IPv4-mapped
])
def test_ipv6_forms_that_wrap_an_internal_ipv4_address_are_refused(host, inside):
    """Issue #12 §7: the address check accepted IPv6 forms that carry an internal IPv4 address."""
    with pytest.raises(TargetRefused) as info:
        check_target(f"http://{host}/x", resolve=lambda h, port: [h])
    assert inside in str(info.value)


def test_ipv6_forms_that_wrap_a_public_ipv4_address_are_judged_by_it():
    assert check_target("http://[64:ff9b::5db8:d822]/x", resolve=lambda h, port: [h]) == ["64:ff9b::5db8:d822"]
