"""The lessor: the lease table, remaining TTLs, the expiry queue and checkpoints (etcd's lessor.go).

What is replicated (applied from the Raft log on every member, persisted in the backend's
``lease`` bucket): the leases (ID, granted TTL, last checkpointed remaining TTL) and — rebuilt by
the KV store from its keys — which keys are attached to which lease.

What is local to the leader: *when* each lease expires. Only the leader (``promote``d) tracks
expiry; followers keep every lease "forever". The leader asks ``expired(now)`` for leases whose
time is up and proposes their revokes through Raft; keep-alives (``renew``) reach only the leader
and never go through the log. A new leader restarts each lease's full TTL (etcd 3.4's default),
or, with ``checkpointing`` (etcd's ``--experimental-enable-lease-checkpoint``), the leader
periodically proposes checkpoints of the remaining TTL (``checkpoints_due``) and a new leader
restarts each lease from its checkpointed remaining TTL. Checkpoints that are applied are
always honoured, whoever proposed them (as in etcd).

Time enters only as ``now`` (monotonic seconds) arguments.

Persisted record (bucket ``lease``): key = lease ID as 8-byte big-endian (two's complement),
value = msgpack ``[ID, TTL, remaining_TTL]`` (etcd's leasepb.Lease fields).
"""

from __future__ import annotations

import heapq
import math
from typing import TYPE_CHECKING, Any, Protocol

import msgpack

from raftkv import errors
from raftkv.errors import EtcdError, GrpcCode
from raftkv.pb.rpc import (
    LeaseGrantResponse,
    LeaseLeasesResponse,
    LeaseStatus,
    LeaseTimeToLiveResponse,
    ResponseHeader,
)

if TYPE_CHECKING:
    from raftkv.backend import Backend

__all__ = ["MAX_LEASE_TTL", "ErrNotPrimary", "Lease", "Lessor"]

LEASE_BUCKET = b"lease"
MAX_LEASE_TTL = 9_000_000_000
# etcd: leaseRevokeRate; promote spreads expiries so at most 3/4 of it expire per second
LEASE_REVOKE_RATE = 1000
DEFAULT_CHECKPOINT_INTERVAL = 300.0  # etcd: defaultLeaseCheckpointInterval (5 min)
DEFAULT_EXPIRED_RETRY_INTERVAL = 3.0  # etcd: defaultExpiredleaseRetryInterval
MAX_CHECKPOINT_BATCH = 1000

# etcd's lease.ErrNotPrimary: renew on a member that is not the leader (the server forwards).
ErrNotPrimary = EtcdError("not a primary lessor", GrpcCode.UNAVAILABLE)

_MASK64 = (1 << 64) - 1


def _id_key(lease_id: int) -> bytes:
    return (lease_id & _MASK64).to_bytes(8, "big")


class _RevSource(Protocol):
    current_revision: int


class Lease:
    """One lease. ``expiry`` is None while this member is not the leader ("forever")."""

    __slots__ = ("checkpoint_at", "expiry", "id", "keys", "notify_at", "remaining_ttl", "ttl")

    def __init__(self, lease_id: int, ttl: int, remaining_ttl: int = 0) -> None:
        self.id = lease_id
        self.ttl = ttl
        self.remaining_ttl = remaining_ttl  # 0: unset, the full ttl applies
        self.expiry: float | None = None
        self.notify_at: float | None = None  # the valid entry of this lease in the expiry heap
        self.checkpoint_at: float | None = None  # the valid entry in the checkpoint heap
        self.keys: set[bytes] = set()

    def effective_remaining(self) -> int:
        """etcd's RemainingTTL(): the checkpointed remaining TTL if set, else the TTL."""
        return self.remaining_ttl if self.remaining_ttl > 0 else self.ttl

    def remaining(self, now: float) -> float:
        return math.inf if self.expiry is None else self.expiry - now


class Lessor:
    def __init__(
        self,
        backend: Backend,
        *,
        min_ttl: int = 2,
        checkpointing: bool = False,
        checkpoint_interval: float = DEFAULT_CHECKPOINT_INTERVAL,
        expired_retry_interval: float = DEFAULT_EXPIRED_RETRY_INTERVAL,
    ) -> None:
        self._b = backend
        self.min_ttl = min_ttl
        self.checkpointing = checkpointing
        self.checkpoint_interval = checkpoint_interval
        self.expired_retry_interval = expired_retry_interval
        self._leases: dict[int, Lease] = {}
        self._item_map: dict[bytes, int] = {}
        self._primary = False
        self._expiry_heap: list[tuple[float, int]] = []
        self._checkpoint_heap: list[tuple[float, int]] = []
        self._clear_checkpoints: list[int] = []  # renewed leases whose checkpoint must go
        self._now = 0.0  # the latest ``now`` seen; used where etcd reads the clock unasked
        self._kv: _RevSource | None = None
        self._load()

    # --- wiring ----------------------------------------------------------------------------

    def bind(self, kv: _RevSource) -> None:
        """Let response headers carry the KV store's current revision."""
        self._kv = kv

    def _header(self) -> ResponseHeader:
        return ResponseHeader(revision=self._kv.current_revision if self._kv else 0)

    def _load(self) -> None:
        self._b.create_bucket(LEASE_BUCKET)
        for _k, v in self._b.range(LEASE_BUCKET, b"", None):
            lid, ttl, remaining = msgpack.unpackb(v)
            ttl = max(ttl, self.min_ttl)
            self._leases[lid] = Lease(lid, ttl, remaining)

    def recover(self, backend: Backend | None = None, now: float | None = None) -> None:
        """Reload the lease table from (a new) backend, e.g. after a snapshot was installed.

        Attached keys are re-attached by the KV store. A primary lessor starts the reloaded
        leases' expiry from ``now`` (if given).
        """
        if backend is not None:
            self._b = backend
        self._leases = {}
        self._item_map = {}
        self._expiry_heap = []
        self._checkpoint_heap = []
        self._clear_checkpoints = []
        self._load()
        if self._primary and now is not None:
            self.promote(now)

    def _persist(self, lease: Lease) -> None:
        self._b.put(
            LEASE_BUCKET,
            _id_key(lease.id),
            msgpack.packb([lease.id, lease.ttl, lease.remaining_ttl]),
        )

    # --- replicated operations (applied from the log on every member) ----------------------

    def grant(self, lease_id: int, ttl: int, now: float) -> LeaseGrantResponse:
        self._now = now
        if lease_id == 0:
            raise errors.ErrLeaseNotFound
        if ttl > MAX_LEASE_TTL:
            raise errors.ErrLeaseTTLTooLarge
        if lease_id in self._leases:
            raise errors.ErrLeaseExist
        lease = Lease(lease_id, max(ttl, self.min_ttl))
        self._leases[lease_id] = lease
        if self._primary:
            self._refresh(lease, now, 0.0)
            self._schedule_checkpoint(lease, now)
        self._persist(lease)
        return LeaseGrantResponse(header=self._header(), ID=lease_id, TTL=lease.ttl)

    def checkpoint(self, lease_id: int, remaining_ttl: int, now: float | None = None) -> None:
        """Apply a LeaseCheckpoint: remember (and persist) the lease's remaining TTL."""
        lease = self._leases.get(lease_id)
        if lease is None:
            return
        lease.remaining_ttl = remaining_ttl
        self._persist(lease)
        if self._primary:
            self._schedule_checkpoint(lease, self._now if now is None else now)

    def remove(self, lease_id: int) -> Lease:
        """Forget a revoked lease (the KV store has deleted its keys). ErrLeaseNotFound."""
        lease = self._leases.pop(lease_id, None)
        if lease is None:
            raise errors.ErrLeaseNotFound
        for k in lease.keys:
            if self._item_map.get(k) == lease_id:
                del self._item_map[k]
        self._b.delete(LEASE_BUCKET, _id_key(lease_id))
        return lease

    def attach(self, lease_id: int, key: bytes) -> None:
        lease = self._leases.get(lease_id)
        if lease is None:
            raise errors.ErrLeaseNotFound
        lease.keys.add(key)
        self._item_map[key] = lease_id

    def detach(self, lease_id: int, key: bytes) -> None:
        lease = self._leases.get(lease_id)
        if lease is None:
            raise errors.ErrLeaseNotFound
        lease.keys.discard(key)
        self._item_map.pop(key, None)

    # --- reads -----------------------------------------------------------------------------

    def lookup(self, lease_id: int) -> bool:
        return lease_id in self._leases

    def get(self, lease_id: int) -> Lease | None:
        return self._leases.get(lease_id)

    def get_lease(self, key: bytes) -> int:
        """The lease the key is attached to (0: none)."""
        return self._item_map.get(key, 0)

    def attachments(self) -> dict[bytes, int]:
        """Every attached key and its lease."""
        return dict(self._item_map)

    def keys_of(self, lease_id: int) -> list[bytes]:
        lease = self._leases.get(lease_id)
        if lease is None:
            raise errors.ErrLeaseNotFound
        return sorted(lease.keys)

    def time_to_live(self, lease_id: int, keys: bool, now: float) -> LeaseTimeToLiveResponse:
        lease = self._leases.get(lease_id)
        if lease is None:  # the gateway answers 200 with TTL -1, not an error
            return LeaseTimeToLiveResponse(header=self._header(), ID=lease_id, TTL=-1)
        # not the leader: what a promote would start from; else Go's int64(Seconds()) truncation
        ttl = lease.effective_remaining() if lease.expiry is None else int(lease.expiry - now)
        return LeaseTimeToLiveResponse(
            header=self._header(),
            ID=lease_id,
            TTL=ttl,
            grantedTTL=lease.ttl,
            keys=sorted(lease.keys) if keys else [],
        )

    def leases(self) -> LeaseLeasesResponse:
        ls = sorted(
            self._leases.values(),
            key=lambda lease: (math.inf if lease.expiry is None else lease.expiry, lease.id),
        )
        return LeaseLeasesResponse(
            header=self._header(), leases=[LeaseStatus(ID=lease.id) for lease in ls]
        )

    def __len__(self) -> int:
        return len(self._leases)

    # --- leader-only -----------------------------------------------------------------------

    @property
    def is_primary(self) -> bool:
        return self._primary

    def renew(self, lease_id: int, now: float) -> int:
        """Keep-alive (leader only, not through Raft): restart the TTL; returns the TTL."""
        self._now = now
        if not self._primary:
            raise ErrNotPrimary
        lease = self._leases.get(lease_id)
        if lease is None:
            raise errors.ErrLeaseNotFound
        if lease.expiry is not None and lease.expiry <= now:
            # expired: its revoke is on the way (etcd waits for it, then answers not found)
            raise errors.ErrLeaseNotFound
        if self.checkpointing and lease.remaining_ttl > 0:
            # the checkpointed remaining TTL no longer applies: propose clearing it
            self._clear_checkpoints.append(lease_id)
        lease.expiry = now + lease.ttl
        self._register_expiry(lease, lease.expiry)
        return lease.ttl

    def promote(self, now: float, extend: float = 0.0) -> None:
        """This member became the leader: start every lease's expiry from its remaining TTL."""
        self._now = now
        self._primary = True
        self._expiry_heap = []
        self._checkpoint_heap = []
        for lease in self._leases.values():
            self._refresh(lease, now, extend)
            self._schedule_checkpoint(lease, now)
        if len(self._leases) < LEASE_REVOKE_RATE:
            return
        # spread expiries so that no more than 3/4 of the revoke rate expire in any second
        leases = sorted(self._leases.values(), key=lambda lease: lease.remaining(now))
        base = leases[0].remaining(now)
        next_window = base + 1.0
        expires = 0
        target = (3 * LEASE_REVOKE_RATE) // 4
        for lease in leases:
            remaining = lease.remaining(now)
            if remaining > next_window:
                base = remaining
                next_window = base + 1.0
                expires = 1
                continue
            expires += 1
            if expires <= target:
                continue
            delay = expires / target - (remaining - base)
            next_window = base + delay
            self._refresh(lease, now, delay + extend)
            self._schedule_checkpoint(lease, now)

    def demote(self) -> None:
        """This member is no longer the leader: leases live "forever" until promoted."""
        self._primary = False
        for lease in self._leases.values():
            lease.expiry = None
            lease.notify_at = None
            lease.checkpoint_at = None
        self._expiry_heap = []
        self._checkpoint_heap = []
        self._clear_checkpoints = []

    def expired(self, now: float, limit: int = 16) -> list[int]:
        """Leases whose expiry has passed (the leader proposes their revokes).

        A lease reported here is reported again after ``expired_retry_interval`` if its revoke
        has not been applied by then.
        """
        self._now = now
        out: list[int] = []
        if not self._primary:
            return out
        heap = self._expiry_heap
        leases = self._leases
        while heap and len(out) < limit:
            at, lid = heap[0]
            lease = leases.get(lid)
            if lease is None or lease.notify_at != at:  # stale entry
                heapq.heappop(heap)
                continue
            if now < at:
                break
            heapq.heappop(heap)
            self._register_expiry(lease, now + self.expired_retry_interval)
            if lease.expiry is not None and lease.expiry <= now:
                out.append(lid)
        return out

    def checkpoints_due(self, now: float) -> list[tuple[int, int]]:
        """(ID, remaining TTL) checkpoints the leader should propose now."""
        self._now = now
        out: list[tuple[int, int]] = []
        if not self._primary or not self.checkpointing:
            return out
        for lid in self._clear_checkpoints:
            lease = self._leases.get(lid)
            if lease is not None and lease.remaining_ttl > 0:
                out.append((lid, 0))
        self._clear_checkpoints = []
        heap = self._checkpoint_heap
        while heap and len(out) < MAX_CHECKPOINT_BATCH:
            at, lid = heap[0]
            if at > now:
                break
            heapq.heappop(heap)
            lease = self._leases.get(lid)
            if lease is None or lease.checkpoint_at != at:
                continue
            lease.checkpoint_at = None
            if lease.expiry is None or now >= lease.expiry:
                continue
            remaining = math.ceil(lease.expiry - now)
            if remaining >= lease.ttl:
                continue
            out.append((lid, remaining))
        return out

    # --- internals -------------------------------------------------------------------------

    def _refresh(self, lease: Lease, now: float, extend: float) -> None:
        lease.expiry = now + extend + lease.effective_remaining()
        self._register_expiry(lease, lease.expiry)

    def _register_expiry(self, lease: Lease, at: float) -> None:
        lease.notify_at = at
        heapq.heappush(self._expiry_heap, (at, lease.id))

    def _schedule_checkpoint(self, lease: Lease, now: float) -> None:
        if self.checkpointing and lease.effective_remaining() > self.checkpoint_interval:
            at = now + self.checkpoint_interval
            lease.checkpoint_at = at
            heapq.heappush(self._checkpoint_heap, (at, lease.id))

    def debug_state(self) -> dict[str, Any]:
        return {
            "primary": self._primary,
            "leases": {
                lid: (lease.ttl, lease.remaining_ttl, sorted(lease.keys))
                for lid, lease in sorted(self._leases.items())
            },
        }
