"""The etcd versions raftkv answers as (``/version``, Status, metrics): the etcd 3.4 release
whose behaviour it reproduces, and that release's cluster version."""

__all__ = ["ETCD_CLUSTER_VERSION", "ETCD_VERSION"]

ETCD_VERSION = "3.4.23"
ETCD_CLUSTER_VERSION = "3.4.0"
