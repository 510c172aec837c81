"""Free TCP ports for the processes the tests start.

Ports come from below the kernel's ephemeral range (``ip_local_port_range``, 32768
and up by default), so an outgoing connection of any process on the machine can
never take a port between the moment it is handed out and the moment the test's
server binds it; and a port is handed out once per test run.
"""

from __future__ import annotations

import random
import socket

#: Below the default ephemeral range and above the well-known and usual service ports.
FIRST, LAST = 20_000, 32_000
_handed_out: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on now and that this run has not handed out before."""
    for _ in range(1_000):
        port = random.randint(FIRST, LAST)
        if port in _handed_out:
            continue
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port between {FIRST} and {LAST} on {host}")
