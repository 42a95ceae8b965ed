import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# The shared real-data samples; CI and `make test` point CS336_DATA_DIR here.
DATA_DIR = Path(os.environ.get("CS336_DATA_DIR", PROJECT_ROOT.parent / "shared" / "data")).resolve()
os.environ.setdefault("CS336_DATA_DIR", str(DATA_DIR))
os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(DATA_DIR / "tiktoken-cache"))
FIXTURES = DATA_DIR / "cs336-fixtures"
TINYSTORIES = DATA_DIR / "tinystories"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA_DIR.exists():
        pytest.fail(f"shared data not found at {DATA_DIR}; set CS336_DATA_DIR")
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
