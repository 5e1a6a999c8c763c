"""keyIndex: the revisions of one key, grouped into generations (etcd's mvcc/key_index.go).

A key lives through *generations*: a generation starts when the key is created, gains one
revision per change, and ends with a tombstone (a delete), after which a new, empty generation
waits for the next create. Every revision points at a whole value in the backend.

Example: put(1.0); put(2.0); tombstone(3.0); put(4.0); tombstone(5.0) on key "foo" gives::

    key:      "foo"
    modified: 5.0
    generations:
        {empty}
        {4.0, 5.0(t)}
        {1.0, 2.0, 3.0(t)}

Compaction at rev removes the revisions <= rev except the largest one; a generation whose only
remaining revision is its tombstone is dropped (the key did not exist at rev), and when nothing
but the empty generation is left the key itself is removed from the index::

    compact(2)    {empty}  {4.0, 5.0(t)}  {2.0, 3.0(t)}
    compact(4)    {empty}  {4.0, 5.0(t)}
    compact(5)    {empty}                  -> key removed
    compact(6)    {empty}                  -> key removed

tests/mvcc/test_key_index.py checks exactly this drawing.

Revisions are packed ints (see ``revision``); generation.created is a packed revision too.
This module is pure: no I/O, no clock.
"""

from __future__ import annotations

from raftkv.mvcc.revision import SUB_BITS, main_of, pack

__all__ = ["Generation", "KeyIndex", "RevisionNotFoundError"]

_new_list = list.__new__


class RevisionNotFoundError(Exception):
    """The key has no revision satisfying the request (etcd's ErrRevisionNotFound)."""


class Generation(list):
    """One life of a key: the list of its revisions, plus ``created`` (its first revision)
    and ``ver`` (changes so far). A list subclass to keep one object per generation."""

    __slots__ = ("created", "ver")

    def __init__(self, created: int = 0, ver: int = 0, revs: list[int] | None = None) -> None:
        super().__init__(revs or ())
        self.created = created
        self.ver = ver

    @property
    def revs(self) -> Generation:
        return self

    def is_empty(self) -> bool:
        return not self

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Generation)
            and self.ver == other.ver
            and self.created == other.created
            and list.__eq__(self, other)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        revs = ", ".join(_fmt(r) for r in self)
        return f"Generation(created={_fmt(self.created)}, ver={self.ver}, revs=[{revs}])"


def _fmt(rev: int) -> str:
    return f"{main_of(rev)}.{rev & ((1 << SUB_BITS) - 1)}"


class KeyIndex(list):
    """The generations of one key (the list itself). Only the last one may be empty."""

    __slots__ = ("key", "modified")

    def __init__(self, key: bytes) -> None:
        super().__init__()
        self.key = key
        self.modified = 0  # packed revision of the last change

    @property
    def generations(self) -> KeyIndex:
        return self

    # --- changes ---------------------------------------------------------------------------

    def put(self, rev: int) -> None:
        if rev <= self.modified:
            raise ValueError(f"put with smaller revision {_fmt(rev)} <= {_fmt(self.modified)}")
        gens = self.generations
        if not gens:
            g = Generation()
            gens.append(g)
        else:
            g = gens[-1]
        if not g.revs:  # a new life of the key
            g.created = rev
        g.revs.append(rev)
        g.ver += 1
        self.modified = rev

    @classmethod
    def restored(cls, key: bytes, created: int, modified: int, ver: int) -> KeyIndex:
        """A key index starting at a revision read back from the backend (the fast path of
        ``KeyIndex(key).restore(...)``, for rebuilding millions of them)."""
        g = _new_list(Generation)
        g.append(modified)
        g.created = created
        g.ver = ver
        ki = _new_list(cls)
        ki.append(g)
        ki.key = key
        ki.modified = modified
        return ki

    def restore(self, created: int, modified: int, ver: int) -> None:
        """Start from a revision read back from the backend (history before it compacted)."""
        if self.generations:
            raise ValueError("restore on a non-empty keyIndex")
        self.modified = modified
        self.generations.append(Generation(created, ver, [modified]))

    def tombstone(self, rev: int) -> None:
        """End the current generation with a tombstone at rev."""
        if self.is_empty():
            raise ValueError(f"tombstone on empty keyIndex {self.key!r}")
        if not self.generations[-1].revs:
            raise RevisionNotFoundError
        self.put(rev)
        self.generations.append(Generation())

    # --- reads -----------------------------------------------------------------------------

    def get(self, at: int) -> tuple[int, int, int]:
        """(modified, created, version) of the key as of main revision ``at``.

        Raises RevisionNotFoundError when the key did not exist at ``at``.
        """
        gens = self.generations
        last = gens[-1]
        if last.revs and main_of(last.revs[-1]) <= at:  # fast path: the live value
            return last.revs[-1], last.created, last.ver
        g = self._find_generation(at)
        if g is None:
            raise RevisionNotFoundError
        revs = g.revs
        n = len(revs) - 1
        while n >= 0 and main_of(revs[n]) > at:
            n -= 1
        if n < 0:
            raise RevisionNotFoundError
        return revs[n], g.created, g.ver - (len(revs) - n - 1)

    def _find_generation(self, at: int) -> Generation | None:
        gens = self.generations
        lastg = len(gens) - 1
        cg = lastg
        while cg >= 0:
            g = gens[cg]
            if not g.revs:
                cg -= 1
                continue
            if cg != lastg and main_of(g.revs[-1]) <= at:
                return None  # at is in the gap after this generation's tombstone
            if main_of(g.revs[0]) <= at:
                return g
            cg -= 1
        return None

    def is_empty(self) -> bool:
        gens = self.generations
        return not gens or (len(gens) == 1 and not gens[0].revs)

    def all_revisions(self) -> list[int]:
        return [r for g in self.generations for r in g.revs]

    # --- compaction ------------------------------------------------------------------------

    def compact(self, at: int, available: set[int] | None = None) -> None:
        """Drop revisions <= at except the largest one (and a tombstone that is the largest).

        ``available`` (if given) collects the revisions <= at that remain.
        """
        if self.is_empty():
            raise ValueError(f"compact on empty keyIndex {self.key!r}")
        gen_idx, rev_idx = self._do_compact(at, available)
        gens = self.generations
        g = gens[gen_idx]
        if g:
            if rev_idx > 0:
                del g[:rev_idx]
            if len(g.revs) == 1 and gen_idx != len(gens) - 1:
                # only the tombstone is left: the key did not exist at ``at``
                if available is not None:
                    available.discard(g.revs[0])
                gen_idx += 1
        if gen_idx:
            del gens[:gen_idx]

    def keep(self, at: int, available: set[int]) -> None:
        """Add to ``available`` the revisions a compaction at ``at`` would keep."""
        if self.is_empty():
            return
        gen_idx, rev_idx = self._do_compact(at, available)
        gens = self.generations
        g = gens[gen_idx]
        if g.revs and rev_idx == len(g.revs) - 1 and gen_idx != len(gens) - 1:
            available.discard(g.revs[rev_idx])

    def _do_compact(self, at: int, available: set[int] | None) -> tuple[int, int]:
        gens = self.generations
        gen_idx = 0
        g = gens[0]
        # the first generation that includes ``at`` or was created after it
        while gen_idx < len(gens) - 1:
            if main_of(g.revs[-1]) > at:
                break
            gen_idx += 1
            g = gens[gen_idx]
        revs = g.revs
        n = len(revs) - 1
        while n >= 0:
            if main_of(revs[n]) <= at:
                if available is not None:
                    available.add(revs[n])
                break
            n -= 1
        return gen_idx, n

    # --- misc ------------------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, KeyIndex)
            and self.key == other.key
            and self.modified == other.modified
            and list.__eq__(self, other)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        gens = " ".join(repr(g) for g in self.generations)
        return f"KeyIndex({self.key!r}, modified={_fmt(self.modified)}, {gens})"


def rev(main: int, sub: int = 0) -> int:
    """Shorthand used by tests and docs: the packed revision main.sub."""
    return pack(main, sub)
