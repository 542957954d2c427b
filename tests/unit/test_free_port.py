"""devstack.free_port hands out ports below the kernel's ephemeral range: a port inside it may be
taken at any moment as the source port of some outgoing connection, and a server restarted on its
old port (the private broker, `minqing run` on the same run directory) could then not start — a CI
run failed so ("port(s) … are in use")."""
import socket

from minqing.shell import devstack_proc


def test_ports_are_below_the_ephemeral_range_and_never_handed_out_twice():
    low, _high = devstack_proc.ephemeral_range()
    ports = [devstack_proc.free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    if low - 16 - devstack_proc.PORT_FLOOR >= 1000:
        assert all(devstack_proc.PORT_FLOOR <= p < low - 16 for p in ports), ports


def test_a_port_something_listens_on_is_skipped(monkeypatch):
    low, _high = devstack_proc.ephemeral_range()
    if low - 16 - devstack_proc.PORT_FLOOR < 1000:
        return        # this kernel's range leaves no room below it: the kernel picks (bind to port 0)
    with socket.socket() as taken:
        for port in range(devstack_proc.PORT_FLOOR, low - 16):
            try:
                taken.bind(("127.0.0.1", port))
                break
            except OSError:
                continue
        taken.listen()
        free = next(p for p in range(port + 1, low - 16)
                    if p not in devstack_proc._handed_out_ports and devstack_proc._port_is_free(p, reuse_address=False))
        offered = iter([port, free])
        monkeypatch.setattr(devstack_proc.random, "randrange", lambda _a, _b: next(offered))
        assert devstack_proc.free_port() == free


def test_the_range_is_read_from_the_kernel(tmp_path, monkeypatch):
    setting = tmp_path / "ip_local_port_range"
    setting.write_text("40000\t50000\n")
    monkeypatch.setattr(devstack_proc, "_EPHEMERAL_RANGE", setting)
    assert devstack_proc.ephemeral_range() == (40000, 50000)
    setting.write_text("nonsense")
    assert devstack_proc.ephemeral_range() == (32768, 60999)


def test_a_block_is_free_below_the_range_and_none_of_it_is_handed_out_again():
    low, _high = devstack_proc.ephemeral_range()
    base = devstack_proc.free_port_block(8)
    block = set(range(base, base + 8))
    assert all(devstack_proc._port_is_free(p, reuse_address=False) for p in block)
    if low - 16 - devstack_proc.PORT_FLOOR >= 1000:
        assert base + 8 <= low
    later = {devstack_proc.free_port() for _ in range(300)}
    later |= {devstack_proc.free_port_block(8) + k for _ in range(20) for k in range(8)}
    assert not later & block
