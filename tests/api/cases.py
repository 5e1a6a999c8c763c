"""The request sequences sent to both etcd and raftkv, and how their replies are compared.

A case is ``(name, path, body)`` (POST) or a dict for other methods and streams. Cases run in
order against a fresh cluster, so revisions line up. ``STATELESS`` names the cases whose reply
does not depend on the store (bad input, routing): the API's unit tests replay them against a
fake server and compare with etcd's recorded bytes.
"""

from __future__ import annotations

import base64
import json
from typing import Any


def b(s: str | bytes) -> str:
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def j(**kw: Any) -> str:
    return json.dumps(kw, separators=(",", ":"))


def _put(k: str, v: str = "", **kw: Any) -> str:
    d: dict[str, Any] = {"key": b(k)}
    if v:
        d["value"] = b(v)
    d.update(kw)
    return json.dumps(d)


def _op(kind: str, **kw: Any) -> dict:
    return {f"request_{kind}": kw}


BIG_TOO_LARGE = j(key=b("big"), value=b(b"x" * (1600 * 1024)))
BIG_GRPC = j(key=b("big"), value=b(b"x" * (2100 * 1024)))

# (name, path, body) for POST; dicts for anything else.
CASES: list[Any] = [
    # --- kv basics ---
    ("put_foo", "/v3/kv/put", _put("foo", "bar")),
    ("range_foo", "/v3/kv/range", j(key=b("foo"))),
    ("range_missing", "/v3/kv/range", j(key=b("nope"))),
    ("put_a1_prev", "/v3/kv/put", _put("a", "1", prev_kv=True)),
    ("put_a2_prev", "/v3/kv/put", _put("a", "2", prev_kv=True)),
    ("put_b_empty_value", "/v3/kv/put", _put("b")),
    ("put_c", "/v3/kv/put", _put("c", "3")),
    ("range_prefix_all", "/v3/kv/range", j(key=b("a"), range_end=b("d"))),
    ("range_limit", "/v3/kv/range", j(key=b("a"), range_end=b("d"), limit=1)),
    ("range_limit_str", "/v3/kv/range", j(key=b("a"), range_end=b("d"), limit="2")),
    (
        "range_desc_keys_only",
        "/v3/kv/range",
        j(key=b("a"), range_end=b("d"), sort_order="DESCEND", sort_target="KEY", keys_only=True),
    ),
    ("range_count_only", "/v3/kv/range", j(key=b("a"), range_end=b("d"), count_only=True)),
    ("range_from_key", "/v3/kv/range", j(key=b("b"), range_end=b("\x00"))),
    ("range_serializable", "/v3/kv/range", j(key=b("foo"), serializable=True)),
    ("range_rev", "/v3/kv/range", j(key=b("a"), revision=3)),
    ("range_sort_num", "/v3/kv/range", j(key=b("a"), range_end=b("d"), sort_order=2)),
    (
        "range_sort_value",
        "/v3/kv/range",
        j(key=b("a"), range_end=b("d"), sort_order="ASCEND", sort_target="VALUE"),
    ),
    (
        "range_sort_target_only",
        "/v3/kv/range",
        j(key=b("a"), range_end=b("d"), sort_target="VALUE", keys_only=True),
    ),
    ("range_min_mod", "/v3/kv/range", j(key=b("a"), range_end=b("d"), min_mod_revision=5)),
    ("range_future", "/v3/kv/range", j(key=b("a"), revision=1000)),
    ("range_unknown_fields", "/v3/kv/range", '{"key":"' + b("foo") + '","bogus":[1,{"x":2}]}'),
    ("range_camel", "/v3/kv/range", j(key=b("a"), rangeEnd=b("d"), keysOnly=True)),
    ("range_trailing_garbage", "/v3/kv/range", j(key=b("foo")) + " trailing"),
    ("range_two_objects", "/v3/kv/range", j(key=b("foo")) + j(key=b("a"))),
    ("put_ignore_value_missing", "/v3/kv/put", j(key=b("zz"), ignore_value=True)),
    ("put_ignore_value_ok", "/v3/kv/put", j(key=b("foo"), ignore_value=True)),
    ("put_ignore_value_with_value", "/v3/kv/put", _put("foo", "x", ignore_value=True)),
    ("put_ignore_lease_with_lease", "/v3/kv/put", _put("foo", "x", ignore_lease=True, lease=5)),
    ("range_foo_after_ignore", "/v3/kv/range", j(key=b("foo"))),
    # --- txn ---
    (
        "txn_success_all_ops",
        "/v3/kv/txn",
        json.dumps(
            {
                "compare": [{"key": b("a"), "target": "VALUE", "result": "EQUAL", "value": b("2")}],
                "success": [
                    _op("put", key=b("t1"), value=b("v")),
                    _op("range", key=b("a")),
                    _op("delete_range", key=b("nothing")),
                    {"request_txn": {}},
                ],
                "failure": [],
            }
        ),
    ),
    (
        "txn_failure",
        "/v3/kv/txn",
        json.dumps(
            {
                "compare": [
                    {"key": b("a"), "target": "VALUE", "result": "EQUAL", "value": b("nope")}
                ],
                "success": [_op("put", key=b("t2"), value=b("v"))],
                "failure": [_op("range", key=b("a"), range_end=b("b"))],
            }
        ),
    ),
    ("txn_empty", "/v3/kv/txn", "{}"),
    (
        "txn_missing_key_compares",
        "/v3/kv/txn",
        json.dumps(
            {
                "compare": [
                    {"key": b("missing"), "target": "VERSION", "result": "EQUAL"},
                    {"key": b("missing"), "target": "CREATE", "result": "EQUAL"},
                    {"key": b("missing"), "target": "MOD", "result": "EQUAL"},
                ],
                "success": [_op("put", key=b("t3"), value=b("x"), prev_kv=True)],
            }
        ),
    ),
    (
        "txn_numeric_enums",
        "/v3/kv/txn",
        json.dumps(
            {
                "compare": [{"key": b("a"), "target": 3, "result": 1, "value": b("1")}],
                "success": [_op("delete_range", key=b("t3"), prev_kv=True)],
            }
        ),
    ),
    (
        "txn_unknown_compare_result",
        "/v3/kv/txn",
        json.dumps(
            {"compare": [{"key": b("a"), "target": "VALUE", "result": 9, "value": b("nope")}]}
        ),
    ),
    (
        "txn_compare_range",
        "/v3/kv/txn",
        json.dumps(
            {
                "compare": [
                    {
                        "key": b("a"),
                        "range_end": b("c"),
                        "target": "VERSION",
                        "result": "GREATER",
                        "version": 0,
                    }
                ],
                "success": [_op("range", key=b("a"), range_end=b("c"), count_only=True)],
            }
        ),
    ),
    (
        "txn_nested",
        "/v3/kv/txn",
        json.dumps(
            {
                "success": [
                    {
                        "request_txn": {
                            "success": [_op("put", key=b("n1"), value=b("v"))],
                            "failure": [_op("put", key=b("n2"), value=b("v"))],
                        }
                    },
                    _op("range", key=b("n1")),
                ]
            }
        ),
    ),
    (
        "txn_duplicate_put",
        "/v3/kv/txn",
        json.dumps({"success": [_op("put", key=b("d")), _op("put", key=b("d"))]}),
    ),
    (
        "txn_put_in_deleted_range",
        "/v3/kv/txn",
        json.dumps(
            {
                "success": [
                    _op("delete_range", key=b("a"), range_end=b("c")),
                    _op("put", key=b("b")),
                ]
            }
        ),
    ),
    (
        "txn_nested_duplicate",
        "/v3/kv/txn",
        json.dumps(
            {
                "success": [
                    _op("put", key=b("d")),
                    {"request_txn": {"success": [_op("put", key=b("d"))]}},
                ]
            }
        ),
    ),
    (
        "txn_then_else_same_key_ok",
        "/v3/kv/txn",
        json.dumps(
            {
                "success": [
                    {
                        "request_txn": {
                            "success": [_op("put", key=b("s"), value=b("1"))],
                            "failure": [_op("put", key=b("s"), value=b("2"))],
                        }
                    }
                ]
            }
        ),
    ),
    ("txn_empty_op", "/v3/kv/txn", json.dumps({"success": [{}]})),
    (
        "txn_empty_compare_key",
        "/v3/kv/txn",
        json.dumps({"compare": [{"target": "VERSION"}]}),
    ),
    (
        "txn_empty_put_key",
        "/v3/kv/txn",
        json.dumps({"success": [_op("put", value=b("x"))]}),
    ),
    (
        "txn_too_many_ops",
        "/v3/kv/txn",
        json.dumps({"success": [_op("range", key=b(f"k{i}")) for i in range(129)]}),
    ),
    (
        "txn_128_ops_ok",
        "/v3/kv/txn",
        json.dumps({"success": [_op("range", key=b(f"k{i}")) for i in range(128)]}),
    ),
    # --- delete ---
    ("del_range_prev", "/v3/kv/deleterange", j(key=b("a"), range_end=b("c"), prev_kv=True)),
    ("del_missing", "/v3/kv/deleterange", j(key=b("a"))),
    ("del_one", "/v3/kv/deleterange", j(key=b("c"))),
    ("del_empty_key", "/v3/kv/deleterange", j(range_end=b("z"))),
    # --- leases (client-chosen IDs: server-made IDs differ by design) ---
    ("lease_grant", "/v3/lease/grant", j(TTL=30, ID=4242)),
    ("lease_grant_again", "/v3/lease/grant", j(TTL=30, ID=4242)),
    ("lease_grant_str", "/v3/lease/grant", j(TTL="60", ID="4343")),
    ("put_with_lease", "/v3/kv/put", _put("l1", "v", lease=4242)),
    ("put_with_lease2", "/v3/kv/put", _put("l2", "v", lease="4242")),
    ("put_unknown_lease", "/v3/kv/put", _put("l3", "v", lease=999)),
    ("range_leased", "/v3/kv/range", j(key=b("l1"))),
    ("ttl_keys", "/v3/lease/timetolive", j(ID=4242, keys=True)),
    ("ttl_nokeys", "/v3/lease/timetolive", j(ID=4242)),
    ("ttl_unknown", "/v3/lease/timetolive", j(ID=1)),
    ("ttl_old_route", "/v3/kv/lease/timetolive", j(ID=4343)),
    ("leases", "/v3/lease/leases", "{}"),
    # after "leases": a 2 s lease (the minimum) could expire before that list on a slow day
    ("lease_grant_ttl0", "/v3/lease/grant", j(TTL=0, ID=4444)),
    ("lease_revoke", "/v3/lease/revoke", j(ID=4242)),
    ("lease_revoke_again", "/v3/lease/revoke", j(ID=4242)),
    ("lease_revoke_old_route", "/v3/kv/lease/revoke", j(ID=4343)),
    ("range_after_revoke", "/v3/kv/range", j(key=b("l"), range_end=b("m"))),
    # --- compaction ---
    ("put_cmp1", "/v3/kv/put", _put("cmp", "1")),
    ("put_cmp2", "/v3/kv/put", _put("cmp", "2")),
    ("compact", "/v3/kv/compaction", j(revision=3)),
    ("compact_again", "/v3/kv/compaction", j(revision=3)),
    ("compact_lower", "/v3/kv/compaction", j(revision=2)),
    ("compact_future", "/v3/kv/compaction", j(revision=100000)),
    ("range_compacted", "/v3/kv/range", j(key=b("a"), revision=2)),
    ("range_at_compact_rev", "/v3/kv/range", j(key=b("foo"), revision=3)),
    # --- cluster & maintenance ---
    ("alarm_get", "/v3/maintenance/alarm", "{}"),
    ("status", "/v3/maintenance/status", "{}"),
    ("hash", "/v3/maintenance/hash", "{}"),
    ("member_list", "/v3/cluster/member/list", "{}"),
    # --- auth (disabled) ---
    ("auth_authenticate", "/v3/auth/authenticate", j(name="root", password="x")),
    ("auth_authenticate_bad_type", "/v3/auth/authenticate", j(name=5)),
    ("auth_enable", "/v3/auth/enable", "{}"),
    ("auth_disable", "/v3/auth/disable", "{}"),
    ("auth_user_list", "/v3/auth/user/list", "{}"),
    ("auth_role_list", "/v3/auth/role/list", "{}"),
    ("auth_user_add_empty", "/v3/auth/user/add", "{}"),
    ("auth_role_add_empty", "/v3/auth/role/add", j(name="")),
    ("auth_user_get", "/v3/auth/user/get", j(name="u")),
    ("auth_role_get", "/v3/auth/role/get", j(role="r")),
    ("auth_user_delete", "/v3/auth/user/delete", "{}"),
    ("auth_role_grant", "/v3/auth/role/grant", j(name="r")),
    ("auth_status_route", "/v3/auth/status", "{}"),
    # --- bad input ---
    ("bad_truncated", "/v3/kv/range", '{"key":"Zm9'),
    ("bad_empty_body", "/v3/kv/range", ""),
    ("bad_null_body", "/v3/kv/range", "null"),
    ("bad_array_body", "/v3/kv/range", "[]"),
    ("bad_string_body", "/v3/kv/range", '"x"'),
    ("bad_number_body", "/v3/kv/range", "5"),
    ("bad_char", "/v3/kv/range", "}"),
    ("bad_after_key", "/v3/kv/range", '{"key" "x"}'),
    ("bad_after_value", "/v3/kv/range", '{"key":"eA==" "x"}'),
    ("bad_unquoted_key", "/v3/kv/range", "{key:1}"),
    ("bad_literal", "/v3/kv/range", '{"key":"eA==","serializable":tru}'),
    ("bad_float_limit", "/v3/kv/range", '{"key":"eA==","limit":1.5}'),
    ("bad_exp_limit", "/v3/kv/range", '{"key":"eA==","limit":1e3}'),
    ("bad_str_limit", "/v3/kv/range", '{"key":"eA==","limit":"x"}'),
    ("bad_str_float_limit", "/v3/kv/range", '{"key":"eA==","limit":"1.5"}'),
    ("bad_empty_str_limit", "/v3/kv/range", '{"key":"eA==","limit":""}'),
    ("bad_bool_limit", "/v3/kv/range", '{"key":"eA==","limit":true}'),
    ("bad_obj_limit", "/v3/kv/range", '{"key":"eA==","limit":{}}'),
    ("bad_huge_limit", "/v3/kv/range", '{"key":"eA==","limit":99999999999999999999}'),
    ("null_limit", "/v3/kv/range", '{"key":"eA==","limit":null}'),
    ("bad_b64_unpadded", "/v3/kv/range", '{"key":"YmF"}'),
    ("bad_b64_urlsafe", "/v3/kv/range", '{"key":"YmF-"}'),
    ("bad_b64_char", "/v3/kv/range", '{"key":"Y!=="}'),
    ("bad_b64_pad", "/v3/kv/range", '{"key":"Y==="}'),
    ("bad_b64_short_pad", "/v3/kv/range", '{"key":"YQ="}'),
    ("bad_b64_after_pad", "/v3/kv/range", '{"key":"YQ==YQ=="}'),
    ("bad_leading_zero_limit", "/v3/kv/range", '{"key":"eA==","limit":"007"}'),
    ("bad_neg_lit", "/v3/kv/range", '{"key":"eA==","limit":-x}'),
    ("bad_uint_negative", "/v3/maintenance/alarm", '{"memberID":-1}'),
    ("bad_watch_id_float", "/v3/kv/range", '{"key":"eA==","max_create_revision":1e400}'),
    ("key_as_byte_array", "/v3/kv/range", '{"key":[102,111,111]}'),
    ("camel_wins_over_orig", "/v3/kv/range", '{"key":"YQ==","range_end":"YQ==","rangeEnd":"ZA=="}'),
    ("b64_with_escaped_newline", "/v3/kv/range", '{"key":"Zm9v\\nYmFy"}'),
    ("bad_key_number", "/v3/kv/range", '{"key":5}'),
    ("bad_key_bool", "/v3/kv/range", '{"key":true}'),
    ("bad_key_object", "/v3/kv/range", '{"key":{}}'),
    ("bad_enum_name", "/v3/kv/range", '{"key":"eA==","sort_order":"BAD"}'),
    ("enum_unknown_number", "/v3/kv/range", '{"key":"eA==","sort_order":7}'),
    ("bad_enum_float", "/v3/kv/range", '{"key":"eA==","sort_order":1.5}'),
    ("bad_enum_bool", "/v3/kv/range", '{"key":"eA==","sort_target":false}'),
    ("bad_bool_string", "/v3/kv/range", '{"key":"eA==","serializable":"true"}'),
    ("bad_bool_number", "/v3/kv/range", '{"key":"eA==","serializable":1}'),
    ("bad_compare_not_list", "/v3/kv/txn", '{"compare":{}}'),
    ("bad_compare_elem", "/v3/kv/txn", '{"compare":[5]}'),
    ("bad_compare_enum", "/v3/kv/txn", '{"compare":[{"key":"eA==","result":"SAME"}]}'),
    ("bad_txn_op_type", "/v3/kv/txn", '{"success":[{"request_put":"x"}]}'),
    ("bad_lease_id_float", "/v3/lease/grant", '{"TTL":5.5}'),
    ("bad_nan", "/v3/kv/range", '{"key":"eA==","limit":NaN}'),
    ("bad_control_char", "/v3/kv/range", '{"key":"e\x01"}'),
    ("bad_escape", "/v3/kv/range", '{"key":"\\q"}'),
    ("empty_key_put", "/v3/kv/put", '{"key":""}'),
    ("empty_key_range", "/v3/kv/range", '{"key":""}'),
    ("put_too_large", "/v3/kv/put", BIG_TOO_LARGE),
    ("put_grpc_limit", "/v3/kv/put", BIG_GRPC),
    # --- routing ---
    {"name": "get_on_post_route", "method": "GET", "path": "/v3/kv/range"},
    {"name": "put_on_post_route", "method": "PUT", "path": "/v3/kv/range", "body": "{}"},
    {"name": "options_route", "method": "OPTIONS", "path": "/v3/kv/range"},
    ("unknown_v3_route", "/v3/kv/nope", "{}"),
    ("unknown_root_route", "/nope", "{}"),
    ("trailing_slash", "/v3/kv/range/", "{}"),
    {"name": "health", "method": "GET", "path": "/health"},
    {"name": "post_health", "method": "POST", "path": "/health", "body": ""},
    {"name": "version", "method": "GET", "path": "/version"},
    {"name": "head_health", "method": "HEAD", "path": "/health"},
    {"name": "delete_version", "method": "DELETE", "path": "/version"},
    # --- streams ---
    {
        "name": "watch_history",
        "path": "/v3/watch",
        "body": j(create_request={"key": b("cmp"), "start_revision": 4, "prev_kv": True}),
        "stream_for": 1.0,
    },
    {
        "name": "watch_compacted",
        "path": "/v3/watch",
        "body": j(create_request={"key": b("a"), "start_revision": 2}),
        "stream_for": 1.0,
    },
    {
        "name": "watch_several",
        "path": "/v3/watch",
        "body": j(create_request={"key": b("x")})
        + j(create_request={"key": b("y"), "watch_id": 7})
        + j(progress_request={})
        + j(cancel_request={"watch_id": 7})
        + j(cancel_request={"watch_id": 99}),
        "stream_for": 1.0,
    },
    {
        "name": "watch_bad_first",
        "path": "/v3/watch",
        "body": '{"create_request":{"key":"!!"}}',
        "stream_for": 1.0,
    },
    {"name": "watch_bad_json", "path": "/v3/watch", "body": '{"bad', "stream_for": 1.0},
    {
        "name": "watch_live",
        "path": "/v3/watch",
        # one watcher per stream: etcd orders two watchers' replies by Go map iteration
        "body": j(create_request={"key": b("live/"), "range_end": b("live0"), "prev_kv": True}),
        "stream_for": 3.0,
        "during": [
            ("/v3/kv/put", _put("live/a", "1")),
            ("/v3/kv/put", _put("live/a", "2")),
            (
                "/v3/kv/txn",
                json.dumps(
                    {
                        "success": [
                            _op("put", key=b("live/b"), value=b("x")),
                            _op("put", key=b("live/c"), value=b("y")),
                        ]
                    }
                ),
            ),
            ("/v3/kv/put", _put("other", "z")),
            ("/v3/kv/deleterange", j(key=b("live/"), range_end=b("live0"))),
        ],
    },
    {
        "name": "watch_live_filtered",
        "path": "/v3/watch",
        "body": j(create_request={"key": b("live/"), "range_end": b("live0"), "filters": [0]}),
        "stream_for": 3.0,
        "during": [
            ("/v3/kv/put", _put("live/a", "1")),
            ("/v3/kv/deleterange", j(key=b("live/"), range_end=b("live0"), prev_kv=True)),
        ],
    },
    {
        "name": "watch_lease_expiry",
        "path": "/v3/watch",
        "body": j(create_request={"key": b("exp"), "prev_kv": True}),
        "stream_for": 7.0,
        "during": [
            ("/v3/lease/grant", j(TTL=2, ID=7777)),
            ("/v3/kv/put", _put("exp", "soon gone", lease=7777)),
        ],
    },
    ("range_after_expiry", "/v3/kv/range", j(key=b("exp"))),
    ("ttl_after_expiry", "/v3/lease/timetolive", j(ID=7777)),
    {
        "name": "watch_big_event",
        "path": "/v3/watch",
        "body": j(create_request={"key": b("bigv")}),
        "stream_for": 2.5,
        "during": [("/v3/kv/put", _put("bigv", "v" * 3000))],
    },
    ("range_big_value", "/v3/kv/range", j(key=b("bigv"))),
    # --- through a follower (forwarded to the leader) ---
    {
        "name": "f_put",
        "path": "/v3/kv/put",
        "body": _put("fw", "1", prev_kv=True),
        "to": "follower",
    },
    {
        "name": "f_put2",
        "path": "/v3/kv/put",
        "body": _put("fw", "2", prev_kv=True),
        "to": "follower",
    },
    {"name": "f_range", "path": "/v3/kv/range", "body": j(key=b("fw")), "to": "follower"},
    {
        "name": "f_txn",
        "path": "/v3/kv/txn",
        "body": json.dumps(
            {
                "compare": [{"key": b("fw"), "target": "VERSION", "result": "EQUAL", "version": 2}],
                "success": [_op("delete_range", key=b("fw"), prev_kv=True)],
            }
        ),
        "to": "follower",
    },
    {"name": "f_lease", "path": "/v3/lease/grant", "body": j(TTL=40, ID=6161), "to": "follower"},
    {
        "name": "f_lease_dup",
        "path": "/v3/lease/grant",
        "body": j(TTL=40, ID=6161),
        "to": "follower",
    },
    {"name": "f_ttl", "path": "/v3/lease/timetolive", "body": j(ID=6161), "to": "follower"},
    {
        "name": "f_keepalive",
        "path": "/v3/lease/keepalive",
        "body": j(ID=6161),
        "stream_for": 3.0,
        "to": "follower",
    },
    {"name": "f_revoke", "path": "/v3/lease/revoke", "body": j(ID=6161), "to": "follower"},
    {"name": "f_compact_old", "path": "/v3/kv/compaction", "body": j(revision=2), "to": "follower"},
    {
        "name": "f_watch",
        "path": "/v3/watch",
        "body": j(create_request={"key": b("fw2")}),
        "stream_for": 2.0,
        "to": "follower",
        "during": [("/v3/kv/put", _put("fw2", "x")), ("/v3/kv/deleterange", j(key=b("fw2")))],
    },
    {
        "name": "watch_bad_second",
        "path": "/v3/watch",
        "body": j(create_request={"key": b("q")}) + '{"create_request":{"key":"!!"}}',
        "stream_for": 1.0,
    },
    {"name": "watch_empty_object", "path": "/v3/watch", "body": "{}", "stream_for": 1.0},
    {"name": "watch_empty_body", "path": "/v3/watch", "body": "", "stream_for": 1.0},
    {
        "name": "watch_empty_range",
        "path": "/v3/watch",
        "body": j(create_request={"key": b("b"), "range_end": b("a")}),
        "stream_for": 1.0,
    },
    {
        "name": "watch_dup_id",
        "path": "/v3/watch",
        "body": j(create_request={"key": b("a"), "watch_id": 3})
        + j(create_request={"key": b("b"), "watch_id": 3}),
        "stream_for": 1.0,
    },
    {
        "name": "watch_from_key_all",
        "path": "/v3/watch",
        "body": j(create_request={"start_revision": 18, "range_end": b("\x00")}),
        "stream_for": 1.0,
    },
    ("lease_grant_ka", "/v3/lease/grant", j(TTL=30, ID=5151)),
    {
        "name": "keepalive",
        "path": "/v3/lease/keepalive",
        "body": j(ID=5151) + j(ID="5151") + j(ID=5252),
        "stream_for": 3.0,
    },
    {"name": "keepalive_bad", "path": "/v3/lease/keepalive", "body": '{"ID":"x"}'},
    {
        "name": "keepalive_bad_second",
        "path": "/v3/lease/keepalive",
        "body": j(ID=5151) + '{"ID":"x"}',
        "stream_for": 3.0,
    },
    {"name": "keepalive_empty", "path": "/v3/lease/keepalive", "body": ""},
    # --- an alarm of a type etcd does not know: stored and listed with its number ---
    ("alarm_unknown_type", "/v3/maintenance/alarm", j(action="ACTIVATE", memberID=5, alarm=7)),
    ("alarm_get_unknown_type", "/v3/maintenance/alarm", j(action="GET", alarm=7)),
    {"name": "health_with_unknown_alarm", "method": "GET", "path": "/health"},
    ("alarm_unknown_type_off", "/v3/maintenance/alarm", j(action=2, memberID=5, alarm=7)),
    ("alarm_get_after_off", "/v3/maintenance/alarm", j(action="GET")),
]

# Replies that do not depend on the store: checked against etcd's recorded bytes in unit tests.
STATELESS = {
    name
    for c in CASES
    for name in [c[0] if isinstance(c, tuple) else c["name"]]
    if name.startswith(("bad_", "empty_key_", "txn_duplicate", "txn_put_in", "txn_nested_dup"))
    or (
        name.startswith("auth_")
        and name not in {"auth_disable", "auth_user_list", "auth_role_list"}
    )
    or name
    in {
        "txn_empty_op",
        "txn_empty_compare_key",
        "txn_empty_put_key",
        "txn_too_many_ops",
        "put_too_large",
        "put_grpc_limit",
        "put_ignore_value_with_value",
        "put_ignore_lease_with_lease",
        "get_on_post_route",
        "put_on_post_route",
        "options_route",
        "unknown_v3_route",
        "unknown_root_route",
        "trailing_slash",
        "health",
        "post_health",
        "version",
        "head_health",
        "delete_version",
        "watch_bad_first",
        "watch_empty_object",
        "watch_empty_body",
        "watch_bad_json",
        "keepalive_bad",
        "keepalive_empty",
    }
}


# sending a case and normalising its reply: tests/api/exchange.py
