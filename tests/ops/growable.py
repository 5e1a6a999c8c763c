"""A LocalCluster whose membership changes: ``size`` slots (addresses, proxies, data dirs) of
which the first ``initial`` start as the cluster; the others join later, after ``member add``,
with ``--initial-cluster-state existing`` (as an operator does with etcd)."""

from __future__ import annotations

from cluster import LocalCluster, Member
from cluster.config import member_argv
from tests.ops.helpers import eventually

__all__ = ["GrowableCluster"]


class GrowableCluster(LocalCluster):
    def __init__(self, size: int, base_dir, initial: int = 3, **kw) -> None:
        super().__init__(size, base_dir, **kw)
        self.in_cluster = [m.name for m in self.members[:initial]]
        self.joined: set[str] = set()

    async def start(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if self.proxy_enabled:
            await self._start_proxy()
        for m in self.members:
            if m.name in self.in_cluster:
                self._spawn(m)
        self.save_state()

    def argv(self, m: Member) -> list[str]:
        names = [*self.in_cluster, *([m.name] if m.name not in self.in_cluster else [])]
        return member_argv(
            m.spec,
            [x.spec for x in self.members if x.name in names],
            token=self.token,
            cluster_state="existing" if m.name in self.joined or m.wiped else "new",
            settings=self.settings,
            member_cmd=self.member_cmd,
        )

    @property
    def running(self) -> list[Member]:
        return [m for m in self.members if m.name in self.in_cluster and m.state() == "running"]

    async def add(self, via: Member, m: Member, learner: bool = False) -> int:
        """``member add`` through ``via`` (retried while the strict reconfig check refuses),
        then start the member; its id."""
        body = {"peerURLs": [m.spec.advertise_peer_url], "isLearner": learner}
        resp = await eventually(
            lambda: self.client(via).call("cluster/member/add", body), 30, f"add {m.name}"
        )
        self.joined.add(m.name)
        self.in_cluster.append(m.name)
        self._spawn(m)
        self.save_state()
        return int(resp["member"]["ID"])

    async def remove(self, via: Member, member_id: int) -> dict:
        body = {"ID": str(member_id)}
        resp = await eventually(
            lambda: self.client(via).call("cluster/member/remove", body), 30, "remove"
        )
        gone = self.by_id(member_id)
        if gone is not None:
            self.in_cluster.remove(gone.name)
        return resp
