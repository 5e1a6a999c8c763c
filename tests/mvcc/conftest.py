import pytest

from tests.mvcc.helpers import Env


@pytest.fixture
def env(tmp_path):
    e = Env(str(tmp_path))
    yield e
    e.close()
