"""Cluster membership: member ids derived as etcd derives them, and the member table kept in
the backend's ``members`` bucket.

- member id = first 8 bytes (big-endian) of sha1(sorted peer URLs joined + cluster token);
- cluster id = first 8 bytes of sha1 over the sorted member ids as 8-byte big-endian words.

So every member computes the same ids from the same ``--initial-cluster`` and token, and two
clusters with different tokens never accept each other's members.

Bucket ``members``: key = member id as 16 hex digits, value = JSON
``{"id", "name", "peerURLs", "clientURLs"}``; bucket ``members_removed``: ids of removed members.
Bootstrapped members carry their ``--initial-cluster`` name; client URLs stay empty until the
member publishes its attributes through Raft.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from raftkv.pb.rpc import Member as PbMember

if TYPE_CHECKING:
    from raftkv.backend import Backend

__all__ = ["Member", "RaftCluster", "compute_cluster_id", "compute_member_id"]

MEMBERS_BUCKET = b"members"
REMOVED_BUCKET = b"members_removed"


def compute_member_id(peer_urls: list[str], token: str) -> int:
    b = "".join(sorted(peer_urls)).encode() + token.encode()
    return int.from_bytes(hashlib.sha1(b).digest()[:8], "big")


def compute_cluster_id(member_ids: list[int]) -> int:
    b = b"".join(i.to_bytes(8, "big") for i in sorted(member_ids))
    return int.from_bytes(hashlib.sha1(b).digest()[:8], "big")


@dataclass(slots=True)
class Member:
    id: int
    name: str = ""
    peer_urls: list[str] = field(default_factory=list)
    client_urls: list[str] = field(default_factory=list)
    is_learner: bool = False

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "id": self.id,
                "name": self.name,
                "peerURLs": self.peer_urls,
                "clientURLs": self.client_urls,
                "isLearner": self.is_learner,
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Member:
        d = json.loads(data)
        return cls(
            d["id"],
            d.get("name", ""),
            d.get("peerURLs", []),
            d.get("clientURLs", []),
            d.get("isLearner", False),
        )

    def to_pb(self) -> PbMember:
        return PbMember(
            ID=self.id,
            name=self.name,
            peerURLs=list(self.peer_urls),
            clientURLs=list(self.client_urls),
            isLearner=self.is_learner,
        )


class RaftCluster:
    """The member table of one cluster (this member's view, as applied from the log)."""

    def __init__(self, cluster_id: int, members: dict[int, Member] | None = None) -> None:
        self.cluster_id = cluster_id
        self.members: dict[int, Member] = dict(members or {})
        self.removed: set[int] = set()
        self._backend: Backend | None = None

    @classmethod
    def from_initial_cluster(cls, initial: dict[str, list[str]], token: str) -> RaftCluster:
        members = {}
        for name, urls in initial.items():
            mid = compute_member_id(urls, token)
            members[mid] = Member(mid, name, list(urls), [])
        return cls(compute_cluster_id(list(members)), members)

    def id_of(self, name: str) -> int:
        for m in self.members.values():
            if m.name == name:
                return m.id
        raise KeyError(name)

    # --- persistence ---------------------------------------------------------------------------

    def attach(self, backend: Backend) -> None:
        self._backend = backend
        backend.create_bucket(MEMBERS_BUCKET)
        backend.create_bucket(REMOVED_BUCKET)

    def load(self, backend: Backend) -> bool:
        """Replace the table with the backend's (True if the backend had any members)."""
        self.attach(backend)
        members = {}
        for _k, v in backend.range(MEMBERS_BUCKET, b"\x00", None):
            m = Member.from_json(v)
            members[m.id] = m
        removed = {int(k, 16) for k, _v in backend.range(REMOVED_BUCKET, b"\x00", None)}
        if members:
            self.members = members
            self.removed = removed
            return True
        return False

    def save_all(self) -> None:
        for m in self.members.values():
            self._save(m)

    def _save(self, m: Member) -> None:
        if self._backend is not None:
            self._backend.put(MEMBERS_BUCKET, f"{m.id:016x}".encode(), m.to_json())

    # --- changes (applied from the log) -------------------------------------------------------

    def add(
        self,
        member_id: int,
        peer_urls: list[str] | None = None,
        name: str = "",
        is_learner: bool = False,
    ) -> Member:
        m = self.members.get(member_id)
        if m is None:
            m = Member(member_id, name, list(peer_urls or []), [], is_learner)
            self.members[member_id] = m
            self._save(m)
        return m

    def promote(self, member_id: int) -> None:
        m = self.members.get(member_id)
        if m is not None and m.is_learner:
            m.is_learner = False
            self._save(m)

    def update_peer_urls(self, member_id: int, peer_urls: list[str]) -> None:
        """etcd 3.4's UpdateRaftAttributes: replaces the raft attributes, so a learner comes
        out of it marked as a voter in the member table (as etcd 3.4 shows it)."""
        m = self.members.get(member_id)
        if m is not None:
            m.peer_urls = list(peer_urls)
            m.is_learner = False
            self._save(m)

    def remove(self, member_id: int) -> None:
        self.members.pop(member_id, None)
        self.removed.add(member_id)
        if self._backend is not None:
            self._backend.delete(MEMBERS_BUCKET, f"{member_id:016x}".encode())
            self._backend.put(REMOVED_BUCKET, f"{member_id:016x}".encode(), b"removed")

    def update_attributes(self, member_id: int, name: str, client_urls: list[str]) -> None:
        m = self.members.get(member_id)
        if m is None:
            return
        if m.name == name and m.client_urls == list(client_urls):
            return
        m.name = name
        m.client_urls = list(client_urls)
        self._save(m)

    def to_pb(self) -> list[PbMember]:
        return [self.members[i].to_pb() for i in sorted(self.members)]
