"""A committed AlarmRequest of a type etcd does not know: etcd stores it (listed, in status
errors as its number, /health false) and so does raftkv -- the applier must never stop on a
committed entry."""

from raftkv.pb import rpc
from tests.server.test_recovery import _cfg, _start


async def test_unknown_alarm_type_is_stored_and_the_member_keeps_applying(tmp_path):
    cfg = _cfg(tmp_path)
    m = await _start(cfg)
    s = m.server
    try:
        act = rpc.AlarmRequest(action=rpc.AlarmAction.ACTIVATE, memberID=5, alarm=7)
        got = await s.alarm(act)
        assert [(a.memberID, int(a.alarm)) for a in got.alarms] == [(5, 7)]
        assert (await s.status(rpc.StatusRequest())).errors == ["memberID:5 alarm:7 "]
        assert not s.is_healthy()
        put = await s.put(rpc.PutRequest(key=b"k", value=b"v"))  # still applying
        assert put.header.revision == 2
        only7 = await s.alarm(rpc.AlarmRequest(action=rpc.AlarmAction.GET, alarm=7))
        assert [(a.memberID, int(a.alarm)) for a in only7.alarms] == [(5, 7)]
    finally:
        await m.stop()

    m2 = await _start(cfg)  # read back from the alarm bucket
    s2 = m2.server
    try:
        listed = await s2.alarm(rpc.AlarmRequest(action=rpc.AlarmAction.GET))
        assert [(a.memberID, int(a.alarm)) for a in listed.alarms] == [(5, 7)]
        off = rpc.AlarmRequest(action=rpc.AlarmAction.DEACTIVATE, memberID=5, alarm=7)
        assert len((await s2.alarm(off)).alarms) == 1
        assert s2.is_healthy()
    finally:
        await m2.stop()
