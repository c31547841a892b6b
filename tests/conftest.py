"""Shared test set-up: one TensorFlow import for the whole suite, the real
CLOTH3D++ samples when they are beside the repository, and small helpers."""
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")


def _shared_jax_compilation_cache():
    """One JAX compilation cache for the session's JAX processes (many tests start one): each
    would otherwise compile the same small XLA programs again (a tiny SHN's first eager call:
    ~23 s cold, ~6 s with the cache on 2 CPU cores). Made once, by the first process that loads
    this file (with pytest-xdist: the controller, before its workers inherit the environment),
    and removed when that process ends. The cached programs are what XLA compiles anyway."""
    if "JAX_COMPILATION_CACHE_DIR" in os.environ:
        return
    import atexit
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="smplr-tests-jax-cache-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    os.environ.update(JAX_COMPILATION_CACHE_DIR=folder, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                      JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1")


_shared_jax_compilation_cache()

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


def run_backend(backend, code, timeout=600, block_tensorflow=None, env=None):
    """Run Python `code` in a fresh process under Keras backend `backend`.

    The pytest process itself runs Keras on TensorFlow (a backend is fixed at
    the first `import keras`), so JAX checks run in a subprocess. With
    `block_tensorflow` (default: True for "jax") `import tensorflow` fails
    inside it, as on the GPU machine, which has no TensorFlow. Returns the
    process's stdout; a non-zero exit fails the test with its stderr.
    """
    import subprocess
    import textwrap

    block = backend == "jax" if block_tensorflow is None else block_tensorflow
    prelude = "import sys\nsys.modules['tensorflow'] = None\n" if block else ""
    full_env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=str(REPO_ROOT),
                    JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2")
    full_env.update(env or {})
    result = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], cwd=REPO_ROOT,
                            env=full_env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        pytest.fail(f"{backend} subprocess failed (exit {result.returncode}):\n{result.stderr[-4000:]}")
    return result.stdout


def have_jax():
    """Whether JAX is importable (requirements-jax.txt); tests that need it skip with this reason otherwise."""
    import importlib.util

    return importlib.util.find_spec("jax") is not None


requires_jax = pytest.mark.skipif(not have_jax(), reason="JAX is not installed (pip install -r requirements-jax.txt)")


#: Tests that take minutes, run first so that with `make test`'s two workers
#: (pytest-xdist) the longest one does not start last on one worker while the
#: other idles. They run in subprocesses, so the order does not change them.
LONG_TESTS = ("test_quick_chain_then_test_py_on_generated_data",)


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: item.name not in LONG_TESTS)  # stable: the rest keep their order
