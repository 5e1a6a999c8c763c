"""Constants shared by the core's modules: the "no node" id, role names, the transfer context."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["CAMPAIGN_TRANSFER", "NONE", "StateType"]

NONE = 0  # "no node": no leader known, no vote cast
CAMPAIGN_TRANSFER = b"CampaignTransfer"  # vote context that overrides the leader lease


class StateType(IntEnum):
    FOLLOWER = 0
    CANDIDATE = 1
    LEADER = 2
    PRE_CANDIDATE = 3

    def __str__(self) -> str:
        return self.name
