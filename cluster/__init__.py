"""Run and disturb a local raftkv cluster: member processes, fault proxies, a gateway client.

Library: LocalCluster (cluster.local), Client (cluster.client), the linearizability checker
(cluster.linearizability). CLI: `python -m cluster --help`.
"""

from cluster.client import KV, Client, EtcdError
from cluster.local import ClusterError, LocalCluster, Member

__all__ = ["KV", "Client", "ClusterError", "EtcdError", "LocalCluster", "Member"]
