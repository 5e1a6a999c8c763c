"""The fault proxy in front of one member, driven in-process against an echo server."""

from __future__ import annotations

import asyncio
import time

import pytest

from cluster.config import free_port
from cluster.proxy_server import ProxySet
from tests.cluster.test_peerstream import HEAD, chunk, decode, frame

IPS = {"m1": "127.0.0.11", "m2": "127.0.0.12", "m3": "127.0.0.13"}


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


@pytest.fixture
async def proxies():
    """m2's real 'peer listener' is an echo server; every member has a proxy."""
    ports = {n: (free_port(ip), free_port(ip)) for n, ip in IPS.items()}
    echo = await asyncio.start_server(_echo, IPS["m2"], ports["m2"][1])
    ps = ProxySet(
        [{"name": n, "ip": IPS[n], "proxy_port": p, "peer_port": q} for n, (p, q) in ports.items()]
    )
    await ps.start()
    ps.port = {n: p for n, (p, _) in ports.items()}
    yield ps
    await ps.close()
    echo.close()


async def dial(ps: ProxySet, src: str, dst: str = "m2"):
    """A connection from member src's IP to dst's proxy."""
    return await asyncio.open_connection(IPS[dst], ps.port[dst], local_addr=(IPS[src], 0))


async def roundtrip(conn, data: bytes = b"ping", timeout: float = 0.5) -> bytes | None:
    """What comes back (b'' on EOF/reset), or None when nothing comes back in time."""
    reader, writer = conn
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(100), timeout)
    except TimeoutError:
        return None
    except ConnectionError:
        return b""


async def test_proxy_forwards_and_knows_the_source_member(proxies):
    a, c = await dial(proxies, "m1"), await dial(proxies, "m3")
    assert await roundtrip(a) == b"ping"
    assert await roundtrip(c) == b"ping"
    assert proxies.faults.snapshot()["connections"] == {"m1->m2": 1, "m3->m2": 1}


async def test_blackhole_cut_silences_only_that_source_until_healed(proxies):
    a, c = await dial(proxies, "m1"), await dial(proxies, "m3")
    assert await roundtrip(a) == b"ping"
    proxies.faults.set("m1", "m2", cut=True)
    assert await roundtrip(a, timeout=0.3) is None  # open, but nothing gets through
    assert await roundtrip(c) == b"ping"  # m3->m2 untouched
    fresh = await dial(proxies, "m1")  # accepted, swallowed
    assert await roundtrip(fresh, timeout=0.3) is None
    proxies.faults.heal("m1", "m2")
    # silenced connections are closed on heal (never resumed mid-stream), then m1 redials
    assert await asyncio.wait_for(a[0].read(100), 1) == b""
    assert await asyncio.wait_for(fresh[0].read(100), 1) == b""
    assert await roundtrip(await dial(proxies, "m1")) == b"ping"


async def test_cut_is_one_directional(proxies):
    proxies.faults.set("m2", "m1", cut=True)  # m2's messages to m1 travel via m1's proxy
    assert await roundtrip(await dial(proxies, "m1")) == b"ping"  # m1->m2 still works


async def test_reset_cut_closes_connections(proxies):
    a = await dial(proxies, "m1")
    assert await roundtrip(a) == b"ping"
    proxies.faults.set("m1", "m2", cut=True, mode="reset")
    assert await asyncio.wait_for(a[0].read(100), 1) == b""
    assert await roundtrip(await dial(proxies, "m1")) in (b"", None)
    proxies.faults.heal()
    assert await roundtrip(await dial(proxies, "m1")) == b"ping"


async def test_latency_delays_the_link_in_order(proxies):
    proxies.faults.set("m1", "m2", latency_ms=150)
    reader, writer = await dial(proxies, "m1")
    t0 = time.monotonic()
    for i in range(5):
        writer.write(b"%d" % i)
        await writer.drain()
        await asyncio.sleep(0.01)
    got = b""
    while len(got) < 5:
        got += await asyncio.wait_for(reader.read(100), 2)
    assert got == b"01234"
    assert time.monotonic() - t0 >= 0.15
    proxies.faults.heal()
    t1 = time.monotonic()
    assert await roundtrip(await dial(proxies, "m1")) == b"ping"
    assert time.monotonic() - t1 < 0.15


async def test_drop_loses_whole_messages_of_a_peer_stream(proxies):
    proxies.faults.rng.seed(7)
    proxies.faults.set("m1", "m2", drop=0.5)
    reader, writer = await dial(proxies, "m1")
    payloads = [b"message %d" % i for i in range(200)]
    writer.write(HEAD + b"".join(chunk(frame(p)) for p in payloads))
    await writer.drain()
    await asyncio.sleep(0.3)  # let the proxy read it all while dropping
    stream = HEAD + b"".join(chunk(frame(p)) for p in [b"end"])
    proxies.faults.set("m1", "m2", drop=0.0)
    writer.write(stream[len(HEAD) :] + b"0\r\n\r\n")
    await writer.drain()
    got = b""
    while not got.endswith(b"0\r\n\r\n"):
        got += await asyncio.wait_for(reader.read(65536), 2)
    head, frames, _ = decode(got)  # a valid stream: whole frames, in order
    assert head == HEAD and frames[-1] == b"end"
    assert 60 < len(frames) - 1 < 140
    assert frames[:-1] == [p for p in payloads if p in set(frames)]


async def test_drop_breaks_other_connections_instead_of_corrupting(proxies):
    proxies.faults.set("m1", "m2", drop=1.0)
    for _ in range(3):
        assert await roundtrip(await dial(proxies, "m1")) in (b"", None)
    assert await roundtrip(await dial(proxies, "m3")) == b"ping"
    proxies.faults.set("m1", "m2", drop=0.0)
    assert await roundtrip(await dial(proxies, "m1")) == b"ping"


async def test_bad_fault_settings_are_refused(proxies):
    with pytest.raises(ValueError):
        proxies.faults.set("m1", "m2", drop=2)
    with pytest.raises(ValueError):
        proxies.faults.set("m1", "m2", mode="sideways")
    with pytest.raises(ValueError):
        proxies.faults.set("m1", "m2", jitter=3)
