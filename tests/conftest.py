"""Shared test set-up: one TensorFlow import for the whole suite, the real
CLOTH3D++ samples when they are beside the repository, and small helpers."""
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

#: Real CLOTH3D++ sample sequences (never copied into the repository).
CLOTH3D_ROOT = Path(os.environ.get("SMPLR_CLOTH3D", REPO_ROOT.parent / "shared" / "cloth3d"))


@pytest.fixture(scope="session")
def cloth3d_root():
    """Path of the real CLOTH3D++ samples; skips the test with a reason when absent."""
    if not (CLOTH3D_ROOT / "train.txt").is_file():
        pytest.skip(f"real CLOTH3D++ samples not found at {CLOTH3D_ROOT} "
                    "(set SMPLR_CLOTH3D to their folder to run this test)")
    return CLOTH3D_ROOT
