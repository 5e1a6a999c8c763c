"""Lease state: the lessor (grant, renew, revoke bookkeeping, expiry queue, checkpoints)."""

from raftkv.lease.lessor import MAX_LEASE_TTL, ErrNotPrimary, Lease, Lessor

__all__ = ["MAX_LEASE_TTL", "ErrNotPrimary", "Lease", "Lessor"]
