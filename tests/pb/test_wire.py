"""The generic pb wire codec round-trips every message kind, nested and repeated."""

from raftkv.pb import decode, encode, rpc, specs
from raftkv.pb.kv import Event, EventType, KeyValue


def test_nested_txn_round_trips_through_msgpack() -> None:
    inner = rpc.TxnRequest(
        success=[rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=b"d"))]
    )
    req = rpc.InternalRaftRequest(
        ID=2**64 - 1,
        txn=rpc.TxnRequest(
            compare=[
                rpc.Compare(result=rpc.CompareResult.LESS, target=rpc.CompareTarget.MOD, key=b"a")
            ],
            success=[
                rpc.RequestOp(request_put=rpc.PutRequest(key=b"k", value=b"\x00\xff", lease=-7))
            ],
            failure=[rpc.RequestOp(request_txn=inner)],
        ),
    )
    got = decode(rpc.InternalRaftRequest, encode(req))
    assert got == req
    assert got.txn.compare[0].result is rpc.CompareResult.LESS


def test_repeated_enums_and_strings_round_trip() -> None:
    w = rpc.WatchCreateRequest(key=b"a", filters=[rpc.FilterType.NODELETE])
    assert decode(rpc.WatchCreateRequest, encode(w)) == w
    m = rpc.Member(ID=1, name="m1", peerURLs=["http://a:1", "http://b:2"])
    assert decode(rpc.Member, encode(m)) == m


def test_unset_sub_message_stays_unset_and_empty_one_stays_set() -> None:
    e = Event(type=EventType.DELETE, kv=KeyValue(key=b"x"), prev_kv=None)
    got = decode(Event, encode(e))
    assert got.prev_kv is None and got.kv == KeyValue(key=b"x")
    assert (
        decode(
            rpc.WatchRequest, encode(rpc.WatchRequest(progress_request=rpc.WatchProgressRequest()))
        ).progress_request
        is not None
    )


def test_field_tables_follow_proto_order() -> None:
    assert [s.name for s in specs(rpc.ResponseHeader)] == [
        "cluster_id",
        "member_id",
        "revision",
        "raft_term",
    ]
    assert [s.name for s in specs(KeyValue)] == [
        "key",
        "create_revision",
        "mod_revision",
        "version",
        "value",
        "lease",
    ]
