"""free_ports: ports for members about to start, outside the kernel's range for outgoing
connections' source ports, never the same twice in one process (parallel cluster starts)."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor

from cluster.config import PORT_FLOOR, _ephemeral_low, free_ports


def test_ports_are_free_distinct_and_below_the_ephemeral_range() -> None:
    with ThreadPoolExecutor(4) as pool:
        batches = list(pool.map(lambda _: free_ports(6), range(8)))
    ports = [p for b in batches for p in b]
    assert len(set(ports)) == len(ports) == 48
    low = _ephemeral_low()
    assert all(PORT_FLOOR <= p < low for p in ports)
    for p in ports[:6]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))  # still free: nothing holds what was handed out
