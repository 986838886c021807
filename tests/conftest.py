import os
from pathlib import Path

# The Triton kernels run through the interpreter on machines without a GPU; this must be set
# before triton is first imported.
os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """Path to ../shared/data; skips the test with a reason when it is absent (a user's machine)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real face data not available: {SHARED_DATA} does not exist")
    return SHARED_DATA
