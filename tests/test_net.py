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
        monkeypatch.setattr("affectgpt.net.ephemeral_range", lambda: (taken + 1000, taken + 2000))
        monkeypatch.setattr("affectgpt.net.random.sample", lambda pool, k: list(pool)[:k])  # in order from LOWEST
        assert sorted(free_ports(2)) == [taken + 1, taken + 2]


def test_free_ports_when_the_ephemeral_range_leaves_no_room_below_it(monkeypatch):
    monkeypatch.setattr("affectgpt.net.ephemeral_range", lambda: (1024, 65535))
    ports = free_ports(3)
    assert len(set(ports)) == 3 and all(LOWEST <= port < 65536 for port in ports)
