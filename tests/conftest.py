import warnings

import pytest
import torch

from bench import architectures
from bench.training.fit import quiet_lightning


def registry_params() -> list:
    """Every registered architecture, for tests parametrised over the registry on generic data (no funnel, no
    embedded fields): one that needs what such data lack (ESMM, AITM: a funnel; STEM: embedded fields) is a
    skipped parameter saying so; ``tests/test_funnel_architectures.py`` runs them on ``synthetic-funnel`` data."""
    return [pytest.param(a, marks=pytest.mark.skip(reason=f"{a} needs {' and '.join(needs)}: run on synthetic-funnel "
                                                          "data in tests/test_funnel_architectures.py"))
            if (needs := architectures.requirements(a)) else a for a in architectures.available()]


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
