"""The gateway codec and Go's error texts, checked without any server.

Expected strings come from etcd 3.4.23's replies (see golden/etcd_replies.json) and from Go's
encoding/json and encoding/base64 behaviour."""

from __future__ import annotations

import asyncio
import json

import pytest

from raftkv.api.codec import decode_message, dumps, encode_message
from raftkv.api.gojson import GoJSONError, decode_first_value, go_b64decode, go_syntax_error
from raftkv.api.streams import BodyReader
from raftkv.api.validate import check_grpc_size, check_txn, proto_size
from raftkv.errors import EtcdError
from raftkv.pb import kv, rpc


def test_response_fields_in_proto_order_with_zero_values_omitted() -> None:
    r = rpc.RangeResponse(
        header=rpc.ResponseHeader(cluster_id=1, member_id=2, revision=3, raft_term=4),
        kvs=[kv.KeyValue(key=b"a", create_revision=2, mod_revision=3, version=1)],
        count=1,
    )
    assert dumps(encode_message(r)) == (
        b'{"header":{"cluster_id":"1","member_id":"2","revision":"3","raft_term":"4"},'
        b'"kvs":[{"key":"YQ==","create_revision":"2","mod_revision":"3","version":"1"}],'
        b'"count":"1"}'
    )


def test_set_empty_submessage_is_emitted_and_enums_by_name() -> None:
    t = rpc.TxnResponse(
        header=rpc.ResponseHeader(revision=5),
        succeeded=True,
        responses=[rpc.ResponseOp(response_txn=rpc.TxnResponse(header=rpc.ResponseHeader()))],
    )
    assert dumps(encode_message(t)) == (
        b'{"header":{"revision":"5"},"succeeded":true,"responses":[{"response_txn":{"header":{}}}]}'
    )
    ev = kv.Event(type=kv.EventType.DELETE, kv=kv.KeyValue(key=b"k", mod_revision=7))
    assert dumps(encode_message(ev)) == b'{"type":"DELETE","kv":{"key":"aw==","mod_revision":"7"}}'


def test_uint32_is_a_number_and_strings_are_escaped_like_go() -> None:
    assert dumps(encode_message(rpc.HashResponse(hash=4288181104))) == b'{"hash":4288181104}'
    m = rpc.Member(name="a<b>&é")
    assert dumps(encode_message(m)) == '{"name":"a\\u003cb\\u003e\\u0026é"}'.encode()


def test_request_accepts_numbers_strings_enum_names_and_numbers_and_camel_names() -> None:
    r = decode_message(
        rpc.RangeRequest,
        {
            "key": "YQ==",
            "rangeEnd": "Yg==",
            "limit": "2",
            "revision": 3,
            "sort_order": 2,
            "sort_target": "VALUE",
            "keys_only": True,
            "unknown": [1],
        },
    )
    assert (r.key, r.range_end, r.limit, r.revision) == (b"a", b"b", 2, 3)
    assert (r.sort_order, r.sort_target, r.keys_only) == (
        rpc.SortOrder.DESCEND,
        rpc.SortTarget.VALUE,
        True,
    )


@pytest.mark.parametrize(
    "body,message",
    [
        ('{"key":"Zm9', "unexpected EOF"),
        ("}", "invalid character '}' looking for beginning of value"),
        ('{"a" 1}', "invalid character '1' after object key"),
        ('{"a":1 "b"}', "invalid character '\"' after object key:value pair"),
        ("{a:1}", "invalid character 'a' looking for beginning of object key string"),
        ("[1 2]", "invalid character '2' after array element"),
        ('{"a":tru}', "invalid character '}' in literal true (expecting 'e')"),
        ('{"a":nul', "unexpected EOF"),
        ('{"a":-x}', "invalid character 'x' in numeric literal"),
        ('{"a":1.}', "invalid character '}' after decimal point in numeric literal"),
        ('{"a":1e}', "invalid character '}' in exponent of numeric literal"),
        ('{"a":"\\q"}', "invalid character 'q' in string escape code"),
        ('{"a":"\\u12x4"}', "invalid character 'x' in \\u hexadecimal character escape"),
        ('{"a":"\x01"}', "invalid character '\\x01' in string literal"),
        ("5x", "invalid character 'x' after top-level value"),
        ('{"a":NaN}', "invalid character 'N' looking for beginning of value"),
    ],
)
def test_go_json_syntax_errors(body: str, message: str) -> None:
    with pytest.raises(GoJSONError) as e:
        decode_first_value(body)
    assert str(e.value) == message


def test_unmarshal_flavour_reports_end_of_input_and_trailing_text() -> None:
    assert go_syntax_error("", stream=False) == "unexpected end of JSON input"
    assert go_syntax_error("1 x", stream=False) == "invalid character 'x' after top-level value"


def test_first_value_wins_and_whitespace_is_eof() -> None:
    assert decode_first_value('{"a":1}{"b":2}') == (True, {"a": 1}, 7)
    assert decode_first_value(" \n\t") == (False, None, 3)


@pytest.mark.parametrize(
    "text,offset",
    [("YmF", 0), ("YmF-", 3), ("Y!==", 1), ("Y===", 1), ("YQ=", 3), ("YQ==YQ==", 4), ("=", 0)],
)
def test_go_base64_error_offsets(text: str, offset: int) -> None:
    with pytest.raises(GoJSONError) as e:
        go_b64decode(text)
    assert str(e.value) == f"illegal base64 data at input byte {offset}"


def test_go_base64_accepts_newlines_and_nonzero_trailing_bits() -> None:
    assert go_b64decode("Zm9v\nYmFy") == b"foobar"
    assert go_b64decode("YR==") == b"a"
    assert go_b64decode("") == b""


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("limit", 1.5, "json: cannot unmarshal number 1.5 into Go value of type int64"),
        ("limit", "1e3", "json: cannot unmarshal number 1e3 into Go value of type int64"),
        ("limit", "", "unexpected end of JSON input"),
        ("limit", "x", "invalid character 'x' looking for beginning of value"),
        ("limit", True, "json: cannot unmarshal bool into Go value of type int64"),
        ("limit", 2**63, f"json: cannot unmarshal number {2**63} into Go value of type int64"),
        ("key", 5, "json: cannot unmarshal number into Go value of type []uint8"),
        ("serializable", "true", "json: cannot unmarshal string into Go value of type bool"),
        (
            "sort_order",
            "UP",
            'unknown value "UP" for enum etcdserverpb.RangeRequest_SortOrder',
        ),
        (
            "sort_target",
            False,
            "json: cannot unmarshal bool into Go value of type "
            "etcdserverpb.RangeRequest_SortTarget",
        ),
    ],
)
def test_type_errors_have_jsonpb_messages(field: str, value: object, message: str) -> None:
    from raftkv.api.gojson import FloatLit

    v = FloatLit(str(value)) if isinstance(value, float) else value
    if field == "limit" and value == "1e3":
        v = FloatLit("1e3")
    with pytest.raises(GoJSONError) as e:
        decode_message(rpc.RangeRequest, {"key": "YQ==", field: v})
    assert str(e.value) == message


def _ops(*keys: str, kind: str = "put") -> list[rpc.RequestOp]:
    if kind == "put":
        return [rpc.RequestOp(request_put=rpc.PutRequest(key=k.encode())) for k in keys]
    return [
        rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=k.encode())) for k in keys
    ]


def test_txn_checks_follow_etcd() -> None:
    with pytest.raises(EtcdError, match="duplicate key"):
        check_txn(rpc.TxnRequest(success=_ops("a", "a")), 128)
    with pytest.raises(EtcdError, match="duplicate key"):
        check_txn(rpc.TxnRequest(success=_ops("a", kind="del") + _ops("a")), 128)
    then_else = rpc.TxnRequest(success=_ops("s"), failure=_ops("s"))
    check_txn(rpc.TxnRequest(success=[rpc.RequestOp(request_txn=then_else)]), 128)
    with pytest.raises(EtcdError, match="too many operations"):
        check_txn(rpc.TxnRequest(success=_ops(*[f"k{i}" for i in range(3)])), 2)
    with pytest.raises(EtcdError, match="key not found"):
        check_txn(rpc.TxnRequest(success=[rpc.RequestOp()]), 128)


def test_proto_size_and_grpc_limit_message() -> None:
    # 2,150,400-byte value: etcd reported "(2150410 vs. 2097152)" for key "big"
    req = rpc.PutRequest(key=b"big", value=b"x" * (2100 * 1024))
    assert proto_size(req) == 2150410
    with pytest.raises(EtcdError) as e:
        check_grpc_size(req, 1536 * 1024, 3_000_000)
    assert e.value.message == "grpc: received message larger than max (2150410 vs. 2097152)"
    assert proto_size(rpc.Compare(range_end=b"x")) == 4  # field 64: a 2-byte tag


class _Feed:
    """request.content stand-in: hands out the body one byte at a time."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def readany(self) -> bytes:
        out, self.data = self.data[:1], self.data[1:]
        return out


def test_body_reader_fed_one_byte_at_a_time() -> None:
    reqs = [{"create_request": {"key": "YQ=="}}, {"progress_request": {}}, {"cancel_request": {}}]
    body = "".join(json.dumps(r) for r in reqs).encode() + b"  "

    async def run() -> list:
        r = BodyReader(_Feed(body))
        out = []
        while True:
            found, v = await r.next()
            if not found:
                return out
            out.append(v)

    assert asyncio.run(run()) == reqs


def test_body_reader_reports_truncation_at_eof() -> None:
    async def run() -> None:
        r = BodyReader(_Feed(b'{"ID":1}{"ID"'))
        assert await r.next() == (True, {"ID": 1})
        await r.next()

    with pytest.raises(GoJSONError, match="unexpected EOF"):
        asyncio.run(run())


def test_enum_numbers_etcd_cannot_survive_are_refused() -> None:
    from raftkv.api.validate import check_alarm, check_range

    with pytest.raises(EtcdError, match="RangeRequest_SortTarget"):
        check_range(rpc.RangeRequest(key=b"a", sort_order=1, sort_target=9))
    with pytest.raises(EtcdError, match="RangeRequest_SortTarget"):
        check_range(rpc.RangeRequest(key=b"a", sort_order=0, sort_target=9))
    with pytest.raises(EtcdError, match="AlarmRequest_AlarmAction"):
        check_alarm(rpc.AlarmRequest(action=7))
    check_alarm(rpc.AlarmRequest(action=1, alarm=7))  # stored by etcd (and raftkv's applier)
    with pytest.raises(EtcdError, match="RangeRequest_SortTarget"):
        bad = rpc.RangeRequest(key=b"a", sort_order=1, sort_target=9)
        check_txn(rpc.TxnRequest(success=[rpc.RequestOp(request_range=bad)]), 128)
