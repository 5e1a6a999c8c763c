from raftkv.raft import StateType
from tests.raft.helpers import Network


def test_three_nodes_elect_and_commit() -> None:
    net = Network.of(3)
    net.campaign(1)
    assert net.raft(1).state == StateType.LEADER
    net.propose(1, b"x")
    net.propose(2, b"y")
    for i in (1, 2, 3):
        assert net.applied_data(i) == [b"x", b"y"]
