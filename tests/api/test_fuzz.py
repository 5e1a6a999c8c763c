"""Whatever a client sends, the decoder answers with a request or with Go's error, never a
Python exception (which would become a traceback or a 500)."""

from __future__ import annotations

import contextlib
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from raftkv.api.app import UNARY_PATHS, parse_body
from raftkv.api.gojson import GoJSONError
from raftkv.pb import rpc

CLASSES = sorted({u.req_cls for u in UNARY_PATHS.values()} | {rpc.WatchRequest}, key=str)
FIELDS = [
    "key",
    "range_end",
    "limit",
    "revision",
    "sort_order",
    "sort_target",
    "ID",
    "TTL",
    "compare",
    "success",
    "failure",
    "request_put",
    "create_request",
    "filters",
    "target",
    "result",
    "value",
    "prev_kv",
    "peerURLs",
    "keys",
    "watch_id",
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
    | st.sampled_from(["YQ==", "DESCEND", "VALUE", "NOPUT", "1.5", "-1"]),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(FIELDS), inner, max_size=5)
    ),
    max_leaves=20,
)


def _decode_all(body: bytes) -> None:
    for cls in CLASSES:
        with contextlib.suppress(GoJSONError):
            parse_body(body, cls)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_json_value_decodes_or_gives_go_error(v: object) -> None:
    _decode_all(json.dumps(v).encode())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_any_bytes_decode_or_give_go_error(b: bytes) -> None:
    _decode_all(b)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet='{}[]":,0123456789.eE-+ tfnrulasYQ=\\', max_size=40))
def test_json_like_text_decodes_or_gives_go_error(t: str) -> None:
    _decode_all(t.encode())
