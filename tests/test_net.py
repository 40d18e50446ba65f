import socket

from affectgpt.net import LOWEST, ephemeral_range, free_ports


def test_free_ports_are_distinct_bindable_and_below_the_ephemeral_range():
    ports = free_ports(9)
    assert len(set(ports)) == 9
    assert all(LOWEST <= port < ephemeral_range()[0] for port in ports)
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_free_ports_skips_a_port_in_use(monkeypatch):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        taken = busy.getsockname()[1]
        monkeypatch.setattr("affectgpt.net.LOWEST", taken)
        monkeypatch.setattr("affectgpt.net.ephemeral_range", lambda: (taken + 3, taken + 10))
        assert sorted(free_ports(2)) == [taken + 1, taken + 2]
