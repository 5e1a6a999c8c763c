"""B+tree page file (bbolt's design) behind a batched write buffer (etcd's mvcc/backend).

Modules, one job each: ``page`` (struct codecs, checksums), ``node`` (decoded nodes, split and
merge), ``freelist`` (free and pending pages), ``pager`` (reads, node cache, writes), ``cursor``
(tree reads), ``tx`` (copy-on-write commit), ``db`` (file, metas, pinned states), ``backend``
(batching, buffer, public API), ``defrag``, ``check``.
"""

from .backend import Backend, ReadSnapshot
from .cursor import Cursor
from .errors import BackendCorruptError, BackendError
from .tx import FAILPOINTS

__all__ = ["FAILPOINTS", "Backend", "BackendCorruptError", "BackendError", "Cursor", "ReadSnapshot"]
