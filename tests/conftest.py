import warnings

import pytest
import torch

from bench.training.fit import quiet_lightning


@pytest.fixture(autouse=True, scope="session")
def _quiet():
    quiet_lightning()
    warnings.filterwarnings("ignore", category=DeprecationWarning)


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    # `bench run` sets torch's thread count in-process (--threads); no test leaks it into the next
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture
def one_thread():
    """One torch thread: tiny models run as fast, without oversubscribing a shared CPU."""
    torch.set_num_threads(1)
