import os
from pathlib import Path

import pytest

from cs336.paths import CHECKOUT_DATA

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# The samples the checkout ships (data/README.md). Tests read these and nothing else, whatever
# $CS336_DATA_DIR a user has set for full-size corpora: results must not depend on it.
DATA_DIR = PROJECT_ROOT / "data"
assert CHECKOUT_DATA == DATA_DIR, f"tests import the package of another checkout: {CHECKOUT_DATA}"
os.environ["CS336_DATA_DIR"] = str(DATA_DIR)
FIXTURES = DATA_DIR / "cs336-fixtures"
TINYSTORIES = DATA_DIR / "tinystories"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA_DIR


@pytest.fixture
def one_thread():
    """Run a test on one torch thread: its tensors are tiny, and a second intra-op thread only adds
    contention (20× slower on a busy machine). Modules opt in with
    `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
