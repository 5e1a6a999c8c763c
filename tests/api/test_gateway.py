"""The API against a fake server, compared with etcd's recorded replies (golden file from
tests/api/test_differential.py --record) for every case whose reply does not depend on the
store: bad input, validation, routing, stream framing errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raftkv.api import create_app
from tests.api import cases as C
from tests.api import exchange as X
from tests.api.appthread import AppThread
from tests.api.fake_server import FakeServer

GOLDEN = json.loads((Path(__file__).parent / "golden" / "etcd_replies.json").read_text())


@pytest.fixture(scope="module")
def api() -> AppThread:
    with AppThread(create_app(FakeServer())) as t:
        yield t


STATELESS = [X.as_dict(c) for c in C.CASES if X.as_dict(c)["name"] in C.STATELESS]


@pytest.mark.parametrize("case", STATELESS, ids=[c["name"] for c in STATELESS])
def test_reply_is_etcds(api: AppThread, case: dict) -> None:
    got = X.normalize(X.send(api.url, case), case, {})
    assert got == GOLDEN[case["name"]]
