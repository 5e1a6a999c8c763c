"""``GET /metrics``: Prometheus text under etcd 3.4's metric names, so etcd dashboards and
alerts work unchanged.

Nothing here runs per request. Gauges and counters are read from the server's own state when
scraped (a custom collector); the only observations made as things happen are the two disk
latency histograms (once per WAL fsync, once per backend commit: per batch, not per put), a
counter bump per leader change and per failed proposal.

    etcd_server_has_leader, etcd_server_is_leader, etcd_server_is_learner,
    etcd_server_leader_changes_seen_total, etcd_server_id{server_id},
    etcd_server_version{server_version}, etcd_cluster_version{cluster_version},
    etcd_server_proposals_committed_total / _applied_total (gauges, as in etcd),
    etcd_server_proposals_pending, etcd_server_proposals_failed_total,
    etcd_server_quota_backend_bytes,
    etcd_mvcc_db_total_size_in_bytes, etcd_mvcc_db_total_size_in_use_in_bytes,
    etcd_debugging_mvcc_db_total_size_in_bytes, etcd_debugging_mvcc_keys_total,
    etcd_debugging_mvcc_watcher_total, etcd_debugging_mvcc_current_revision,
    etcd_debugging_mvcc_compact_revision,
    etcd_network_peer_sent_bytes_total{To}, etcd_network_peer_received_bytes_total{From},
    etcd_disk_wal_fsync_duration_seconds (also as etcd_wal_fsync_duration_seconds),
    etcd_disk_backend_commit_duration_seconds, and process_* (prometheus-client's).

Beside etcd's, raftkv's own: raftkv_event_loop_lag_seconds (the largest lag of the event
loop's 10 ms probe wakes in the last second) and raftkv_event_loop_lag_max_seconds (the largest
since the previous scrape, reset by this one; with _ran_seconds and _queued_seconds, how long
the loop thread ran and waited for a CPU around it): see ``looplag.py``; raftkv_gc_pause_max_seconds
(per generation, the longest collection since the previous scrape): see ``gcpause.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

from prometheus_client import (
    CollectorRegistry,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from raftkv import errors
from raftkv.backend import Backend
from raftkv.mvcc import KVStore
from raftkv.raft import NONE
from raftkv.server.gcpause import GCPauseWatch
from raftkv.server.looplag import LoopLagProbe
from raftkv.server.promtext import text_format
from raftkv.server.wait import Wait
from raftkv.transport import Transport
from raftkv.version import ETCD_VERSION

__all__ = ["ServerMetrics"]

disable_created_metrics()  # no *_created series: etcd (Go's client) has none
# etcd's buckets: 1 ms .. 8 s (wal fsync), 1 ms .. 8 s (backend commit)
_DISK_BUCKETS = tuple(0.001 * 2**i for i in range(14))
_PROPOSAL_FAILURES = {
    errors.ErrTimeout.message,
    errors.ErrTimeoutDueToLeaderFail.message,
    errors.ErrTimeoutDueToConnectionLost.message,
    errors.ErrContextDeadline.message,
}


class RaftView(Protocol):
    lead: int
    committed: int

    @property
    def is_leader(self) -> bool: ...


class ServerMetrics:
    def __init__(
        self,
        *,
        member_id: int,
        node: RaftView,
        applied_index: Callable[[], int],
        is_learner: Callable[[], bool],
        wait: Wait,
        backend: Backend,
        kv: KVStore,
        transport: Transport,
        quota_bytes: int,
        loop_lag: LoopLagProbe,
        gc_pauses: GCPauseWatch,
    ) -> None:
        self.member_id = member_id
        self.node = node
        self.applied_index = applied_index
        self.is_learner = is_learner
        self.wait = wait
        self.backend = backend
        self.kv = kv
        self.transport = transport
        self.quota_bytes = quota_bytes
        self.loop_lag = loop_lag
        self.gc_pauses = gc_pauses
        self.leader_changes = 0
        self.proposals_failed = 0
        self._lead = NONE
        self.registry = CollectorRegistry(auto_describe=False)
        self.wal_fsync = [
            Histogram(
                name,
                "The latency distributions of fsync called by WAL.",
                buckets=_DISK_BUCKETS,
                registry=self.registry,
            )
            for name in ("etcd_disk_wal_fsync_duration_seconds", "etcd_wal_fsync_duration_seconds")
        ]
        self.backend_commit = Histogram(
            "etcd_disk_backend_commit_duration_seconds",
            "The latency distributions of commit called by backend.",
            buckets=_DISK_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_StateCollector(self))
        ProcessCollector(registry=self.registry)

    # --- hooks (cheap: not per request) -------------------------------------------------------

    def observe_wal_fsync(self, seconds: float) -> None:
        for h in self.wal_fsync:
            h.observe(seconds)

    def observe_backend_commit(self, seconds: float) -> None:
        self.backend_commit.observe(seconds)

    def on_leader(self, lead: int) -> None:
        if lead != self._lead:
            if lead != NONE:
                self.leader_changes += 1
            self._lead = lead

    def on_proposal_error(self, e: errors.EtcdError) -> None:
        if e.message in _PROPOSAL_FAILURES:
            self.proposals_failed += 1

    def exposition(self) -> bytes:
        return text_format(self.registry.collect())


def _gauge(name: str, doc: str, value: float, labels: dict[str, str] | None = None) -> Metric:
    g = GaugeMetricFamily(name, doc, labels=list(labels) if labels else None)
    g.add_metric(list(labels.values()) if labels else [], value)
    return g


class _StateCollector(Collector):
    def __init__(self, m: ServerMetrics) -> None:
        self.m = m

    def collect(self) -> Iterator[Metric]:
        m = self.m
        node = m.node
        leader = node.lead
        yield _gauge(
            "etcd_server_has_leader",
            "Whether or not a leader exists. 1 is existence, 0 is not.",
            leader != NONE,
        )
        yield _gauge(
            "etcd_server_is_leader",
            "Whether or not this member is a leader. 1 if is, 0 otherwise.",
            node.is_leader,
        )
        yield _gauge(
            "etcd_server_is_learner",
            "Whether or not this member is a learner. 1 if is, 0 otherwise.",
            m.is_learner(),
        )
        c = CounterMetricFamily(
            "etcd_server_leader_changes_seen", "The number of leader changes seen."
        )
        c.add_metric([], m.leader_changes)
        yield c
        yield _gauge(
            "etcd_server_id",
            "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.",
            1,
            {"server_id": f"{m.member_id:x}"},
        )
        yield _gauge(
            "etcd_server_version",
            "Which version is running. 1 for 'server_version' label with current version.",
            1,
            {"server_version": ETCD_VERSION},
        )
        yield _gauge(
            "etcd_cluster_version",
            "Which version is running. 1 for 'cluster_version' label with current cluster version",
            1,
            {"cluster_version": "3.4"},
        )
        yield _gauge(
            "etcd_server_proposals_committed_total",
            "The total number of consensus proposals committed.",
            node.committed,
        )
        yield _gauge(
            "etcd_server_proposals_applied_total",
            "The total number of consensus proposals applied.",
            m.applied_index(),
        )
        yield _gauge(
            "etcd_server_proposals_pending",
            "The current number of pending proposals to commit.",
            len(m.wait),
        )
        f = CounterMetricFamily(
            "etcd_server_proposals_failed", "The total number of failed proposals seen."
        )
        f.add_metric([], m.proposals_failed)
        yield f
        yield _gauge(
            "etcd_server_quota_backend_bytes",
            "Current backend storage quota size in bytes.",
            m.quota_bytes,
        )
        size = m.backend.size
        yield _gauge(
            "etcd_mvcc_db_total_size_in_bytes",
            "Total size of the underlying database physically allocated in bytes.",
            size,
        )
        yield _gauge(
            "etcd_debugging_mvcc_db_total_size_in_bytes",
            "Total size of the underlying database physically allocated in bytes.",
            size,
        )
        yield _gauge(
            "etcd_mvcc_db_total_size_in_use_in_bytes",
            "Total size of the underlying database logically in use in bytes.",
            m.backend.size_in_use,
        )
        kv = m.kv
        yield _gauge(
            "etcd_debugging_mvcc_watcher_total", "Total number of watchers.", kv.watcher_count
        )
        yield _gauge("etcd_debugging_mvcc_keys_total", "Total number of keys.", kv.key_count)
        yield _gauge(
            "etcd_debugging_mvcc_current_revision",
            "The current revision of store.",
            kv.current_revision,
        )
        yield _gauge(
            "etcd_debugging_mvcc_compact_revision",
            "The revision of the last compaction in store.",
            kv.compact_revision,  # -1 before the first compaction, as in etcd
        )
        sent = CounterMetricFamily(
            "etcd_network_peer_sent_bytes", "The total number of bytes sent to peers.",
            labels=["To"],
        )  # fmt: skip
        received = CounterMetricFamily(
            "etcd_network_peer_received_bytes", "The total number of bytes received from peers.",
            labels=["From"],
        )  # fmt: skip
        t = m.transport
        for pid, p in sorted(t.peers.items()):
            sent.add_metric([f"{pid:x}"], p.sent_bytes)
        for pid, n in sorted(t.received_bytes.items()):
            received.add_metric([f"{pid:x}"], n)
        yield sent
        yield received
        lag = m.loop_lag
        yield _gauge(
            "raftkv_event_loop_lag_seconds",
            "The largest delay of the event loop's 10 ms probe timer in the last second.",
            lag.recent(),
        )
        worst = lag.take_max()
        yield _gauge(
            "raftkv_event_loop_lag_max_seconds",
            "The largest delay of the event loop's 10 ms probe timer since the last scrape.",
            worst.lag,
        )
        yield _gauge(
            "raftkv_event_loop_lag_max_ran_seconds",
            "Over the interval of that largest delay: the time the loop thread ran.",
            worst.ran,
        )
        yield _gauge(
            "raftkv_event_loop_lag_max_queued_seconds",
            "Over the interval of that largest delay: the time the loop thread waited for a CPU.",
            worst.queued,
        )
        pauses = GaugeMetricFamily(
            "raftkv_gc_pause_max_seconds",
            "The longest garbage-collector pause of each generation since the last scrape.",
            labels=["generation"],
        )
        for gen, took in enumerate(m.gc_pauses.take_max()):
            pauses.add_metric([str(gen)], took)
        yield pauses
