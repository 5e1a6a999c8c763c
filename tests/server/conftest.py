import pytest

from tests.server.harness import Cluster


@pytest.fixture
def make_cluster(tmp_path):
    made: list[Cluster] = []

    def make(n: int = 3, extra: list[str] | None = None) -> Cluster:
        c = Cluster(tmp_path, n, extra)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()
