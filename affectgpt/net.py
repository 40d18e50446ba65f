"""Ports for the local services the project starts (Ray head, DeepSpeed rendezvous, MLflow, LLM servers)."""

from __future__ import annotations

import random
import socket
from pathlib import Path

LOWEST = 20000  # below: well-known services, and Ray's worker ports (10002-19999 by default)


def ephemeral_range() -> tuple[int, int]:
    """The range the kernel draws outgoing connections' source ports from (Linux; IANA's range elsewhere)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 49152, 65535


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports free on ``host`` now, drawn below the ephemeral range.

    A port the kernel hands out (``bind(0)``) lies in the ephemeral range, which every outgoing connection
    draws from too: a service starting many processes that connect to each other (a Ray head) can find a
    chosen port taken by one of its own connections before it binds it. Ports below that range are never
    handed out that way. All are held open together while chosen, so they differ; another process may still
    bind one first (the usual race of this idiom, now with deliberate binders only)."""
    low, _ = ephemeral_range()
    # A kernel whose ephemeral range starts near LOWEST leaves no room below it: then any port will have to do.
    pool = range(LOWEST, low) if low - LOWEST >= 1000 else range(LOWEST, 65536)
    candidates = random.sample(pool, min(len(pool), 4 * count + 64))
    held: list[socket.socket] = []
    try:
        for port in candidates:
            s = socket.socket()
            try:
                s.bind((host, port))
            except OSError:
                s.close()
                continue
            held.append(s)
            if len(held) == count:
                return [s.getsockname()[1] for s in held]
        raise RuntimeError(f"found only {len(held)} of {count} free ports in {pool.start}-{pool.stop - 1} on {host}")
    finally:
        for s in held:
            s.close()


def free_port(host: str = "127.0.0.1") -> int:
    return free_ports(1, host)[0]
