import warnings

import pytest

from bench.train import quiet_lightning


@pytest.fixture(autouse=True, scope="session")
def _quiet():
    quiet_lightning()
    warnings.filterwarnings("ignore", category=DeprecationWarning)
