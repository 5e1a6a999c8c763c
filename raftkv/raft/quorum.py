"""Majority quorums: the commit index and vote tallies of one voter set.

Pure functions over a set of voter ids. An empty voter set commits everything (``NO_LIMIT``) and
wins every vote, so that "no config" never blocks; the core never runs with an empty config.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from enum import Enum

from raftkv.raft.util import NO_LIMIT

__all__ = ["VoteResult", "committed_index", "quorum_size", "vote_result"]


class VoteResult(Enum):
    PENDING = 1
    LOST = 2
    WON = 3


def quorum_size(n: int) -> int:
    return n // 2 + 1


def committed_index(voters: Collection[int], acked: Callable[[int], int]) -> int:
    """The largest index acknowledged by a majority of ``voters``: sort the acknowledged indexes
    descending and take the quorum-th one (a missing voter counts as 0)."""
    n = len(voters)
    if n == 0:
        return NO_LIMIT
    srt = sorted((acked(v) for v in voters), reverse=True)
    return srt[quorum_size(n) - 1]


def vote_result(voters: Collection[int], votes: Mapping[int, bool]) -> VoteResult:
    """WON with a majority of yes, LOST once a majority is out of reach, else PENDING."""
    if not voters:
        return VoteResult.WON
    granted = missing = 0
    for v in voters:
        vote = votes.get(v)
        if vote is None:
            missing += 1
        elif vote:
            granted += 1
    q = quorum_size(len(voters))
    if granted >= q:
        return VoteResult.WON
    if granted + missing >= q:
        return VoteResult.PENDING
    return VoteResult.LOST
