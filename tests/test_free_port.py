"""free_port() hands out loopback ports the kernel never gives to outgoing connections, so a
server started on one a moment later cannot find it taken by some client's socket."""

import socket

from envbox.servers import _ephemeral_low, free_port


def test_ports_are_below_the_ephemeral_range_and_bindable():
    low = _ephemeral_low()
    ports = {free_port() for _ in range(20)}
    assert len(ports) > 1                      # random, so two test processes rarely meet
    for port in ports:
        assert 1024 <= port < low
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", port))
