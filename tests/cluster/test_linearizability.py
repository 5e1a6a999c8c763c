"""The linearizability checker on known-good and known-bad register histories."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from cluster.linearizability import Op, check, check_key, minimal_failing, simulated_history


def put(v, t0, t1, client=0, key="k"):
    return Op(key, "put", t0, t1, value=v, client=client)


def get(v, t0, t1, client=0, key="k"):
    return Op(key, "get", t0, t1, output=v, client=client)


def cas(e, v, ok, t0, t1, client=0, key="k"):
    return Op(key, "cas", t0, t1, value=v, expected=e, output=ok, client=client)


def test_sequential_history_is_linearizable():
    h = [put(b"1", 0, 1), get(b"1", 2, 3), cas(b"1", b"2", True, 4, 5), get(b"2", 6, 7)]
    assert check_key(h).ok


def test_read_of_a_missing_key_sees_absent():
    assert check_key([get(None, 0, 1), put(b"1", 2, 3)]).ok
    assert not check_key([put(b"1", 0, 1), get(None, 2, 3)]).ok


def test_concurrent_read_may_see_old_or_new_value():
    w = put(b"1", 0, 10, client=1)
    assert check_key([put(b"0", -2, -1), w, get(b"0", 1, 2)]).ok
    assert check_key([put(b"0", -2, -1), w, get(b"1", 1, 2)]).ok


def test_stale_read_after_write_completed_is_a_violation():
    h = [put(b"0", 0, 1), put(b"1", 2, 3, client=1), get(b"0", 4, 5, client=2)]
    r = check_key(h)
    assert not r.ok and not r.exhausted
    assert "get() -> b'0'" in r.detail


def test_reads_going_back_in_time_are_a_violation():
    # the write is concurrent with both reads, but once one read saw b"1" a later read can't
    # see b"0"
    h = [
        put(b"0", 0, 1),
        put(b"1", 2, 20, client=1),
        get(b"1", 3, 4, client=2),
        get(b"0", 5, 6, client=3),
    ]
    assert not check_key(h).ok


def test_read_of_a_value_never_written_is_a_violation():
    assert not check_key([put(b"1", 0, 1), get(b"2", 0.5, 3)]).ok


def test_two_cas_from_the_same_value_cannot_both_succeed():
    base = [put(b"0", 0, 1)]
    both = [cas(b"0", b"a", True, 2, 5, client=1), cas(b"0", b"b", True, 2, 5, client=2)]
    assert not check_key(base + both).ok
    one = [cas(b"0", b"a", True, 2, 5, client=1), cas(b"0", b"b", False, 2, 5, client=2)]
    assert check_key(base + one).ok


def test_failed_cas_must_see_a_different_value():
    assert not check_key([put(b"0", 0, 1), cas(b"0", b"x", False, 2, 3)]).ok
    assert check_key([put(b"0", 0, 1), cas(b"9", b"x", False, 2, 3)]).ok


def test_cas_on_absent_key():
    assert check_key([cas(None, b"1", True, 0, 1), get(b"1", 2, 3)]).ok
    assert not check_key([put(b"0", 0, 1), cas(None, b"1", True, 2, 3)]).ok


def test_unknown_put_may_take_effect_late_or_never():
    lost = put(b"1", 1, None)  # timed out
    assert check_key([put(b"0", 0, 0.5), lost, get(b"0", 2, 3)]).ok
    assert check_key([put(b"0", 0, 0.5), lost, get(b"1", 2, 3)]).ok
    # ... even much later, but not before it was invoked
    assert check_key([put(b"0", 0, 0.5), lost, get(b"0", 2, 3), get(b"1", 50, 51)]).ok
    assert not check_key([put(b"0", 0, 0.5), get(b"1", 0.6, 0.9), lost]).ok


def test_once_seen_an_unknown_write_cannot_be_unseen():
    h = [put(b"0", 0, 0.5), put(b"1", 1, None), get(b"1", 2, 3), get(b"0", 4, 5)]
    assert not check_key(h).ok


def test_unknown_cas_applies_only_if_its_compare_holds():
    h = [put(b"0", 0, 1), cas(b"9", b"x", None, 2, None), get(b"x", 5, 6)]
    assert not check_key(h).ok
    h = [put(b"0", 0, 1), cas(b"0", b"x", None, 2, None), get(b"x", 5, 6)]
    assert check_key(h).ok


def test_unknown_get_is_ignored():
    assert check_key([put(b"0", 0, 1), get(b"zzz", 2, None)]).ok


def test_keys_are_checked_independently():
    h = [put(b"1", 0, 1, key="a"), put(b"2", 0, 1, key="b"), get(b"1", 2, 3, key="a")]
    assert check(h).ok
    h.append(get(b"1", 2, 3, key="b"))
    r = check(h)
    assert not r.ok
    assert [k.key for k in r.violations] == ["b"]
    assert "NOT linearizable: key 'b'" in r.summary()


def test_initial_state_is_respected():
    assert check([get(b"x", 0, 1)], initial={"k": b"x"}).ok
    assert not check([get(b"x", 0, 1)]).ok


def test_budget_exhaustion_is_reported_as_undecided():
    h = [put(str(i).encode(), 0, 100, client=i) for i in range(12)] + [get(b"zz", 101, 102)]
    r = check(h, max_steps=50)
    assert not r.ok and r.undecided and not r.violations
    assert "undecided" in r.summary()


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=10**9))
def test_simulated_atomic_register_histories_are_linearizable(seed):
    history = simulated_history(random.Random(seed))
    r = check_key(history)
    assert r.ok, r.detail


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=0, max_value=10**9))
def test_a_read_of_a_value_never_written_after_the_history_is_caught(seed):
    history = simulated_history(random.Random(seed), unknown=0.0)
    last = max(op.complete for op in history)
    history.append(get(b"never written", last + 10, last + 11, client=99))
    assert not check_key(history).ok


def test_multi_key_simulated_history_is_linearizable_and_the_summary_says_size_and_time():
    history = simulated_history(random.Random(3), ops=3000, keys=4, clients=8, think=0.01)
    r = check(history)
    assert r.ok, r.summary()
    assert r.ops == 3000 and len(r.keys) == 4
    assert "linearizable: 3000 ops on 4 keys, checked in " in r.summary()
    assert r.summary().endswith(" s CPU")


def test_a_stale_read_is_shrunk_to_the_read_and_the_writes_it_missed():
    history = simulated_history(random.Random(5), ops=400, clients=4, unknown=0.0)
    last = max(op.complete for op in history)
    first = next(op for op in history if op.kind == "put")
    newest = put(b"newest", last + 1, last + 2, client=7, key="k0")
    stale = get(
        first.value, last + 3, last + 4, client=8, key="k0"
    )  # reads a long-overwritten value
    r = check([*history, newest, stale])
    assert not r.ok
    (bad,) = r.violations
    assert stale in bad.minimal and first in bad.minimal  # the read and the write it returned
    assert len(bad.minimal) <= 4, [op.describe() for op in bad.minimal]
    assert not check_key(bad.minimal).ok  # the sub-history fails on its own
    assert "NOT linearizable" in r.summary() and "checked in" in r.summary()


def test_a_read_of_a_value_never_written_is_its_own_minimal_sub_history():
    h = [put(b"1", 0, 1), get(b"2", 2, 3), put(b"3", 5, 6), get(b"3", 7, 8)]
    assert minimal_failing(h) == [h[1]]  # b"2" was never written: the read alone fails


def test_the_minimal_sub_history_keeps_the_chain_of_writes_behind_a_value():
    chain = [put(b"a", 0, 1), cas(b"a", b"b", True, 2, 3), cas(b"b", b"c", True, 4, 5)]
    h = [*chain, put(b"z", 6, 7), get(b"z", 7.5, 7.6), get(b"c", 8, 9)]
    m = minimal_failing(h)
    assert not check_key(m).ok
    assert all(op in m for op in chain) and h[-1] in m  # c <- b <- a, and the stale read


def brute_force_linearizable(ops: list[Op], initial: bytes | None = None) -> bool:
    """Every order of every choice of unknown ops to include, against the register model."""
    from itertools import combinations, permutations

    known = [op for op in ops if not op.unknown]
    unknown = [op for op in ops if op.unknown and op.kind != "get"]
    for n in range(len(unknown) + 1):
        for extra in combinations(unknown, n):
            chosen = known + list(extra)
            for order in permutations(chosen):
                if _respects_real_time(order) and _legal(order, initial):
                    return True
    return False


def _respects_real_time(order) -> bool:
    return all(
        not (b.complete is not None and b.complete < a.invoke)
        for i, a in enumerate(order)
        for b in order[i + 1 :]
    )


def _legal(order, state) -> bool:
    for op in order:
        if op.kind == "put":
            state = op.value
        elif op.kind == "get":
            if op.output != state:
                return False
        elif op.unknown:
            state = op.value if state == op.expected else state
        elif op.output != (state == op.expected):
            return False
        elif op.output:
            state = op.value
    return True


@st.composite
def tiny_histories(draw):
    """Up to 6 ops on one key with small value pools, so that reads often see wrong values,
    CASes fail, values repeat or not, and writes lose their answers."""
    values = [None, b"a", b"b", b"c"]
    ops = []
    for n in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["put", "get", "cas"]))
        t0 = draw(st.integers(0, 8))
        if kind == "get":
            ops.append(get(draw(st.sampled_from(values)), t0, draw(st.integers(t0, 10)), n))
            continue
        end = draw(st.one_of(st.none(), st.integers(t0, 10)))  # None: the answer was lost
        unique = draw(st.booleans())
        value = f"w{n}".encode() if unique else draw(st.sampled_from(values[1:]))
        if kind == "put":
            ops.append(put(value, t0, end, client=n))
        else:
            ok = None if end is None else draw(st.booleans())
            ops.append(cas(draw(st.sampled_from(values)), value, ok, t0, end, client=n))
    readable = [op.value for op in ops if op.kind != "get"]
    for op in ops:  # let reads and compares see the unique values too
        if op.kind == "get" and readable and draw(st.booleans()):
            op.output = draw(st.sampled_from(readable))
        if op.kind == "cas" and readable and draw(st.booleans()):
            op.expected = draw(st.sampled_from(readable))
    return ops


@settings(max_examples=400, deadline=None)
@given(tiny_histories())
def test_the_checker_agrees_with_brute_force_on_tiny_histories(ops):
    # (the unknown-write reductions fire on about half of these; 20k examples ran clean once)
    ok = check_key(ops).ok
    assert ok == brute_force_linearizable(ops), [op.describe() for op in ops]
    if not ok:
        m = minimal_failing(ops)
        assert m and all(any(x is op for op in ops) for x in m)
        assert not brute_force_linearizable(m)
