"""Unit tests for the pure satellites: quorum, Inflights, Progress, Unstable, MemoryStorage,
RaftLog (after etcd-io/raft's quorum/, tracker/, log_unstable_test.go, storage_test.go,
log_test.go)."""

from __future__ import annotations

import pytest

from raftkv.raft import (
    CompactedError,
    ConfState,
    Entry,
    MemoryStorage,
    Snapshot,
    SnapshotMetadata,
    SnapshotOutOfDateError,
    UnavailableError,
)
from raftkv.raft.log import RaftLog
from raftkv.raft.log_unstable import Unstable
from raftkv.raft.quorum import VoteResult, committed_index, vote_result
from raftkv.raft.tracker import Inflights, Progress, ProgressState


def E(i: int, t: int) -> Entry:
    return Entry(t, i)


def snap(i: int, t: int, voters: tuple[int, ...] = (1, 2, 3)) -> Snapshot:
    return Snapshot(SnapshotMetadata(ConfState(voters), i, t))


# --- quorum --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("matches", "want"),
    [
        ({1: 5}, 5),
        ({1: 5, 2: 3}, 3),
        ({1: 5, 2: 3, 3: 4}, 4),
        ({1: 5, 2: 3, 3: 4, 4: 1}, 3),
        ({1: 9, 2: 8, 3: 1, 4: 1, 5: 1}, 1),
        ({1: 9, 2: 8, 3: 7, 4: 1, 5: 1}, 7),
    ],
)
def test_committed_index_is_the_majority_median(matches: dict[int, int], want: int) -> None:
    assert committed_index(matches.keys(), matches.__getitem__) == want


def test_committed_index_counts_missing_voters_as_zero() -> None:
    assert committed_index({1, 2, 3}, lambda i: {1: 5, 2: 5}.get(i, 0)) == 5
    assert committed_index({1, 2, 3}, lambda i: {1: 5}.get(i, 0)) == 0


@pytest.mark.parametrize(
    ("n", "votes", "want"),
    [
        (3, {1: True, 2: True}, VoteResult.WON),
        (3, {1: True}, VoteResult.PENDING),
        (3, {1: True, 2: False}, VoteResult.PENDING),
        (3, {1: False, 2: False}, VoteResult.LOST),
        (4, {1: True, 2: True}, VoteResult.PENDING),
        (4, {1: True, 2: True, 3: True}, VoteResult.WON),
        (4, {1: False, 2: False}, VoteResult.LOST),
        (0, {}, VoteResult.WON),
    ],
)
def test_vote_result(n: int, votes: dict[int, bool], want: VoteResult) -> None:
    assert vote_result(set(range(1, n + 1)), votes) == want


# --- inflights / progress ------------------------------------------------------------------------


def test_inflights_full_by_count_and_freed_in_order() -> None:
    ins = Inflights(3)
    for i in (1, 2, 3):
        ins.add(i, 10)
    assert ins.full() and ins.count() == 3
    ins.free_le(2)
    assert ins.count() == 1 and not ins.full() and ins.bytes == 10
    ins.free_le(10)
    assert ins.count() == 0 and ins.bytes == 0


def test_inflights_full_by_bytes() -> None:
    ins = Inflights(100, max_bytes=25)
    ins.add(1, 10)
    ins.add(2, 10)
    assert not ins.full()
    ins.add(3, 10)
    assert ins.full()
    with pytest.raises(AssertionError):
        ins.add(4, 1)


def test_progress_probe_pauses_after_one_append_and_replicate_pipelines() -> None:
    pr = Progress(0, 1, Inflights(2))
    assert not pr.is_paused()
    pr.sent_entries(1, 10)
    assert pr.is_paused() and pr.next == 1  # probe does not advance next optimistically
    assert pr.maybe_update(1)
    pr.become_replicate()
    assert pr.next == 2
    pr.sent_entries(3, 30)
    assert pr.next == 5 and not pr.is_paused()
    pr.sent_entries(1, 10)
    assert pr.is_paused()  # window of 2 full
    pr.inflights.free_le(4)
    pr.maybe_update(4)
    assert not pr.is_paused()


def test_progress_maybe_decr_to_in_probe_uses_the_hint() -> None:
    pr = Progress(0, 10, Inflights(4))
    assert not pr.maybe_decr_to(5, 3)  # stale: not our last probe
    assert pr.maybe_decr_to(9, 3)
    assert pr.next == 4


def test_progress_maybe_decr_to_in_replicate_falls_back_to_match() -> None:
    pr = Progress(5, 6, Inflights(4))
    pr.become_replicate()
    pr.sent_entries(3, 0)
    assert not pr.maybe_decr_to(4, 0)  # <= match: stale
    assert pr.maybe_decr_to(7, 0) and pr.next == 6


def test_progress_snapshot_state_pauses_until_probe() -> None:
    pr = Progress(0, 1, Inflights(4))
    pr.become_snapshot(20)
    assert pr.is_paused() and pr.state == ProgressState.SNAPSHOT and pr.next == 21
    pr.become_probe()
    assert pr.next == 21 and not pr.is_paused()


# --- unstable ------------------------------------------------------------------------------------


def test_unstable_truncate_and_append_cases() -> None:
    u = Unstable(5)
    u.truncate_and_append([E(5, 1), E(6, 1)])
    u.truncate_and_append([E(7, 1)])  # contiguous append
    assert [e.index for e in u.entries] == [5, 6, 7]
    u.truncate_and_append([E(6, 2)])  # conflict inside: truncate after 5
    assert [(e.index, e.term) for e in u.entries] == [(5, 1), (6, 2)]
    u.truncate_and_append([E(4, 3)])  # before offset: replace everything
    assert u.offset == 4 and [(e.index, e.term) for e in u.entries] == [(4, 3)]


def test_unstable_stable_to_ignores_replaced_entries() -> None:
    u = Unstable(1)
    u.truncate_and_append([E(1, 1), E(2, 1)])
    u.accept_in_progress()
    u.stable_to(2, 2)  # wrong term: ignored
    assert len(u.entries) == 2
    u.stable_to(1, 1)
    assert u.offset == 2 and [e.index for e in u.entries] == [2]
    assert u.offset_in_progress == 3


def test_unstable_next_entries_skip_in_progress() -> None:
    u = Unstable(1)
    u.truncate_and_append([E(1, 1), E(2, 1)])
    u.accept_in_progress()
    assert u.next_entries() == []
    u.truncate_and_append([E(3, 1)])
    assert u.next_entries() == [E(3, 1)]
    u.truncate_and_append([E(2, 2)])  # rewrites an in-progress entry: must be re-sent
    assert u.next_entries() == [E(2, 2)]


def test_unstable_snapshot_terms_and_restore() -> None:
    u = Unstable(1)
    u.restore(snap(10, 3))
    assert u.maybe_first_index() == 11 and u.maybe_last_index() == 10
    assert u.maybe_term(10) == 3 and u.maybe_term(9) is None
    assert u.next_snapshot() is not None
    u.accept_in_progress()
    assert u.next_snapshot() is None
    u.stable_snap_to(10)
    assert u.snapshot is None


# --- MemoryStorage -------------------------------------------------------------------------------


def _storage() -> MemoryStorage:
    st = MemoryStorage()
    st.apply_snapshot(snap(3, 3))
    st.append([E(4, 4), E(5, 5)])
    return st


def test_storage_term_and_bounds() -> None:
    st = _storage()
    assert (st.first_index(), st.last_index()) == (4, 5)
    assert st.term(3) == 3 and st.term(5) == 5
    with pytest.raises(CompactedError):
        st.term(2)
    with pytest.raises(UnavailableError):
        st.term(6)


def test_storage_entries_limits() -> None:
    st = _storage()
    st.append([Entry(5, 6, data=b"x" * 100)])
    with pytest.raises(CompactedError):
        st.entries(3, 5, 1 << 30)
    assert st.entries(4, 7, 1 << 30) == [E(4, 4), E(5, 5), Entry(5, 6, data=b"x" * 100)]
    assert st.entries(4, 7, 30) == [E(4, 4), E(5, 5)]
    assert st.entries(4, 7, 0) == [E(4, 4)]  # always at least one


def test_storage_append_truncates_conflicts_and_skips_compacted() -> None:
    st = _storage()
    st.append([E(5, 6), E(6, 6)])
    assert [(e.index, e.term) for e in st.entries(4, 7, 1 << 30)] == [(4, 4), (5, 6), (6, 6)]
    st.append([E(2, 2), E(3, 3), E(4, 4)])  # compacted prefix is skipped
    assert st.last_index() == 4
    with pytest.raises(AssertionError):
        st.append([E(9, 9)])  # gap


def test_storage_compact_and_snapshot() -> None:
    st = _storage()
    st.append([E(6, 6)])
    with pytest.raises(CompactedError):
        st.compact(3)
    st.compact(5)
    assert st.first_index() == 6 and st.term(5) == 5
    s = st.create_snapshot(6, ConfState((1,)), b"d")
    assert (s.metadata.index, s.metadata.term, s.data) == (6, 6, b"d")
    with pytest.raises(SnapshotOutOfDateError):
        st.create_snapshot(5, None, b"")
    with pytest.raises(SnapshotOutOfDateError):
        st.apply_snapshot(snap(6, 6))
    st.apply_snapshot(snap(10, 7))
    assert st.first_index() == 11 and st.last_index() == 10 and st.term(10) == 7
    assert st.initial_state()[1] == ConfState((1, 2, 3))


# --- RaftLog -------------------------------------------------------------------------------------


def _log(entries: list[tuple[int, int]], unstable: list[tuple[int, int]] = ()) -> RaftLog:
    st = MemoryStorage()
    st.append([E(i, t) for i, t in entries])
    log = RaftLog(st)
    if unstable:
        log.append([E(i, t) for i, t in unstable])
    return log


def test_raft_log_spans_storage_and_unstable() -> None:
    log = _log([(1, 1), (2, 1)], [(3, 2), (4, 2)])
    assert log.first_index() == 1 and log.last_index() == 4
    assert [e.index for e in log.entries(2)] == [2, 3, 4]
    assert log.term(3) == 2 and log.term(0) == 0


@pytest.mark.parametrize(
    ("ents", "want"),
    [
        ([], 0),
        ([(1, 1), (2, 2)], 0),
        ([(2, 2), (3, 3), (4, 4)], 4),
        ([(3, 1)], 3),
        ([(2, 1)], 2),
    ],
)
def test_find_conflict(ents: list[tuple[int, int]], want: int) -> None:
    log = _log([(1, 1), (2, 2), (3, 3)])
    assert log.find_conflict([E(i, t) for i, t in ents]) == want


@pytest.mark.parametrize(
    ("index", "term", "want"),
    [
        (10, 9, (10, 6)),
        (10, 5, (7, 5)),  # skip the whole term-6 run
        (10, 3, (4, 3)),
        (10, 2, (0, 0)),
        (5, 4, (4, 3)),
    ],
)
def test_find_conflict_by_term(index: int, term: int, want: tuple[int, int]) -> None:
    log = _log([(1, 3), (2, 3), (3, 3), (4, 3), (5, 5), (6, 5), (7, 5), (8, 6), (9, 6), (10, 6)])
    assert log.find_conflict_by_term(index, term) == want


def test_maybe_append_refuses_conflicts_below_commit() -> None:
    log = _log([(1, 1), (2, 1), (3, 1)])
    log.commit_to(3)
    with pytest.raises(AssertionError, match="conflicts with committed"):
        log.maybe_append(1, 1, 3, [E(2, 2)])


def test_maybe_append_commits_at_most_the_last_new_entry() -> None:
    log = _log([(1, 1)])
    assert log.maybe_append(1, 1, 10, [E(2, 1)]) == 2
    assert log.committed == 2
    assert log.maybe_append(5, 1, 10, [E(6, 1)]) is None


def test_commit_to_past_last_index_is_an_invariant_violation() -> None:
    log = _log([(1, 1)])
    with pytest.raises(AssertionError, match="out of range"):
        log.commit_to(5)


def test_maybe_commit_requires_the_current_term() -> None:
    log = _log([(1, 1), (2, 2)])
    assert not log.maybe_commit(2, 3)
    assert log.maybe_commit(2, 2) and log.committed == 2


def test_is_up_to_date() -> None:
    log = _log([(1, 1), (2, 2), (3, 2)])
    assert log.is_up_to_date(3, 2) and log.is_up_to_date(1, 3)
    assert not log.is_up_to_date(2, 2) and not log.is_up_to_date(9, 1)


def test_restore_resets_to_the_snapshot() -> None:
    log = _log([(1, 1)], [(2, 1)])
    log.restore(snap(10, 4))
    assert log.committed == 10 and log.first_index() == 11 and log.last_index() == 10
    assert log.term(10) == 4
    with pytest.raises(CompactedError):
        log.term(5)


def test_next_committed_entries_respect_the_size_budget() -> None:
    log = RaftLog(MemoryStorage(), max_applying_ents_size=30)
    log.append([Entry(1, i, data=b"x" * 10) for i in range(1, 6)])
    log.commit_to(5)
    first = log.next_committed_ents(True)
    assert [e.index for e in first] == [1]  # 22 + 22 > 30: one entry
    log.accept_applying(1, 22)
    log.applied_to(1, 22)
    assert [e.index for e in log.next_committed_ents(True)] == [2]
