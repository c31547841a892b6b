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


#: The slowest tests, longest first (seconds of one `make test` call on 2 cores,
#: 2026-12-03), run before all others: pytest-xdist hands tests out in order, so
#: the two workers start on the long ones and finish on short ones, instead of
#: one long test starting last on one worker while the other idles. Most run in
#: subprocesses; none depends on what ran before it.
LONG_TESTS = (
    "test_quick_chain_then_test_py_on_generated_data",                           # 338
    "test_resumed_shn_list_and_stream_runs_repeat_the_uninterrupted_epochs",     # 127
    "test_test_py_results_are_atomic",                                           # 69
    "test_data_parallel_steps_match_one_device[shn-2-2-jax]",                    # 64
    "test_jax_steps_lower_the_loss_dae_and_small_shn",                           # 64
    "test_shn_overfits_two_samples_and_every_variable_gets_gradient",            # 57
    "test_same_weights_give_the_same_outputs_on_both_backends",                  # 55
    "test_data_parallel_cli_dae_run_matches_one_device[tensorflow]",             # 49
    "test_jax_backend_gives_the_same_body",                                      # 43
    "test_data_parallel_steps_match_one_device[shn-2-2-tensorflow]",             # 39
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONG_TESTS)}
    items.sort(key=lambda item: rank.get(item.name, len(LONG_TESTS)))  # stable: the rest keep their order
