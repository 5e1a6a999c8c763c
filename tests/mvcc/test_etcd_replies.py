"""The store behind the real API, replaying every recorded exchange with etcd 3.4 in order
(tests/api/golden/etcd_replies.json, recorded by tests/api/test_differential.py --record):
every reply that depends on the store must be etcd's, byte for byte after normalisation --
revisions, counts, more, sort, txn sub-responses, errors, leases, compaction, watch streams."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from raftkv.api import create_app
from tests.api import cases as C
from tests.api import exchange as X
from tests.api.appthread import AppThread
from tests.mvcc.etcd_replay import MvccServer

GOLDEN = Path(__file__).parent.parent / "api" / "golden" / "etcd_replies.json"
# answered by the server's other parts (stand-ins here), not by the store
NOT_THE_STORE = ("auth_", "status", "member_list", "hash", "alarm", "health")


@pytest.mark.slow
def test_every_store_reply_is_etcds(tmp_path):
    golden = json.loads(GOLDEN.read_text())
    server = MvccServer(os.path.join(tmp_path, "db"))
    mismatches = {}
    compared = 0
    with AppThread(create_app(server)) as t:
        for raw in C.CASES:  # in order: the replies depend on what came before
            case = X.as_dict(raw)
            name = case["name"]
            got = X.normalize(X.send(t.url, case), case, {})
            if name.startswith(NOT_THE_STORE) or name not in golden:
                continue
            compared += 1
            if got != golden[name]:
                mismatches[name] = {
                    k: (got.get(k), v) for k, v in golden[name].items() if got.get(k) != v
                }
        t.call(server.stop())
    server.backend.close()
    assert compared > 100
    assert not mismatches, json.dumps(mismatches, indent=1, default=str)[:5000]
