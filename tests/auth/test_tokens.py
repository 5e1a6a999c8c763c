"""Tokens (raftkv.auth.tokens): simple tokens' format, expiry on a clock, waiting for their
index; JWTs signed and verified with real RSA / EC keys; bad tokens and bad options."""

from __future__ import annotations

import asyncio
import re

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from raftkv.auth.tokens import (
    InvalidAuthOptions,
    JWTTokens,
    SimpleTokens,
    new_token_provider,
    wait_index,
)
from raftkv.errors import ErrVerifyOnly, EtcdError
from tests.auth.keys import write_pem_pair


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_simple_token_format_and_expiry_after_last_use():
    clock = Clock()
    t = SimpleTokens(ttl=10, clock=clock)
    t.enable()
    prefix = t.gen_prefix()
    assert re.fullmatch(r"[a-zA-Z]{16}", prefix)
    tok = t.assign("u", 3, prefix, 42)
    assert tok == f"{prefix}.42"
    clock.now += 9
    assert (await t.info(tok, 7)).username == "u"  # the revision is the store's now
    clock.now += 9  # 18 s after issue, 9 after the last use
    got = await t.info(tok, 7)
    assert got is not None and got.revision == 7
    clock.now += 11
    assert await t.info(tok, 7) is None
    assert await t.info(tok, 7) is None  # and it stays gone


async def test_simple_tokens_refuse_bad_shapes_and_are_not_kept_while_disabled():
    t = SimpleTokens()
    assert t.assign("u", 1, "abc", 5) == "abc.5"
    assert await t.info("abc.5", 1) is None  # auth was off: nothing kept
    t.enable()
    tok = t.assign("u", 1, "abc", 6)
    for bad in ("", "abc", "abc.x", "a.b.c", "abc.7"):
        assert await t.info(bad, 1) is None
    assert await t.info(tok, 1) is not None
    t.invalidate_user("u")
    assert await t.info(tok, 1) is None


async def test_a_simple_token_waits_for_its_entry_to_be_applied_here():
    applied = {"index": 5}
    events: dict[int, asyncio.Event] = {}

    async def wait_applied(i: int) -> bool:
        if i <= applied["index"]:
            return True
        ev = events.setdefault(i, asyncio.Event())
        try:
            await asyncio.wait_for(ev.wait(), 0.5)
        except TimeoutError:
            return False
        return True

    t = SimpleTokens(wait_applied=wait_applied)
    t.enable()
    tok = t.assign("u", 1, "p", 9)
    pending = asyncio.ensure_future(t.info(tok, 1))
    await asyncio.sleep(0.05)
    assert not pending.done()
    events[9].set()
    assert (await pending).username == "u"
    assert await t.info("p.99", 1) is None  # never applied here: judged invalid at the deadline

    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    assert await wait_index(lambda _i: fut, 3, 0.05) is False


@pytest.mark.parametrize(
    ("method", "make"),
    [
        ("RS256", lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        ("ES256", lambda: ec.generate_private_key(ec.SECP256R1())),
    ],
)
async def test_jwt_sign_verify_and_refusals(tmp_path, method, make):
    priv, pub = write_pem_pair(tmp_path, make(), "k")
    spec = f"jwt,pub-key={pub},priv-key={priv},sign-method={method},ttl=5m"
    t = new_token_provider(spec, 300)
    assert isinstance(t, JWTTokens) and t.gen_prefix() == ""
    tok = t.assign("u", 12, "", 0)
    got = await t.info(tok, 99)
    assert (got.username, got.revision) == ("u", 12)  # the revision signed in, not the store's
    assert await t.info(tok[:-3] + "AAA", 99) is None
    assert await t.info("not.a.jwt", 99) is None
    # another key pair's token is refused; a verify-only member reads but cannot sign
    priv2, _pub2 = write_pem_pair(tmp_path, make(), "k2")
    other = new_token_provider(f"jwt,priv-key={priv2},sign-method={method}", 300)
    assert await t.info(other.assign("u", 1, "", 0), 1) is None
    verify_only = new_token_provider(f"jwt,pub-key={pub},sign-method={method}", 300)
    assert (await verify_only.info(tok, 1)).username == "u"
    with pytest.raises(EtcdError) as e:
        verify_only.assign("u", 1, "", 0)
    assert e.value is ErrVerifyOnly


async def test_jwt_expires(tmp_path):
    priv, _pub = write_pem_pair(tmp_path, ec.generate_private_key(ec.SECP256R1()), "k")
    t = new_token_provider(f"jwt,priv-key={priv},sign-method=ES256,ttl=1ms", 300)
    tok = t.assign("u", 1, "", 0)
    await asyncio.sleep(1.1)  # (exp has whole-second resolution)
    assert await t.info(tok, 1) is None


def test_bad_auth_token_options(tmp_path):
    priv, _pub = write_pem_pair(tmp_path, ec.generate_private_key(ec.SECP256R1()), "k")
    for spec in (
        "nope",
        "simple,ttl",
        f"jwt,priv-key={priv},priv-key={priv},sign-method=ES256",
        f"jwt,priv-key={priv}",  # no sign-method
        f"jwt,priv-key={priv},sign-method=XX256",
        "jwt,sign-method=ES256",  # no key
        f"jwt,priv-key={priv},sign-method=RS256",  # an EC key for RSA
        f"jwt,priv-key={priv},sign-method=ES256,ttl=5",  # no unit
        f"jwt,priv-key={tmp_path}/missing,sign-method=ES256",
    ):
        with pytest.raises(InvalidAuthOptions):
            new_token_provider(spec, 300)
    assert isinstance(new_token_provider("simple", 300), SimpleTokens)
