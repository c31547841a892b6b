"""``python -m training dae 0,1``: a whole data-parallel run, as a user starts it, against ``-1``.

With ``SMPLR_DATA_PARALLEL_ON_CPU=1`` the GPU_ID list ``0,1`` names two CPU
devices (JAX: ``XLA_FLAGS=--xla_force_host_platform_device_count=2``;
TensorFlow: the CPU split into two logical devices by ``training.device``).
The DAE stage trains with its real Adam, data pipeline, validation,
checkpoints and TensorBoard; the two-device run is killed after its first
epoch (the runner's crash hook) and resumed, the one-device run is not.
Checked: every step's training losses (TensorBoard) and the validation
metrics (``state.json``) agree to 1e-4 relative; both runs wrote the same
checkpoint files once; the epoch line gives the per-device throughput.

Weights are compared in ``test_data_parallel_steps.py`` with SGD: under
Adam the elements whose gradient is (close to) zero take steps of about
lr * sign(float32 noise), which differ between any two summation orders;
here they are only bounded (at most 2 lr per step apart). Dropout is on for
JAX (masks drawn for the global batch, identical) and off for TensorFlow
(each replica draws a mask for its slice, all from the same seed state).

Also: the one-line errors of a bad list, an uneven batch split and missing GPUs.
"""
import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from conftest import REPO_ROOT, requires_jax
from training import TrainingError

LR, STEPS, EPOCHS = 1e-3, 2, 2


def _cli(backend, gpu_id, args, **env):
    full_env = dict(os.environ, KERAS_BACKEND=backend, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO_ROOT),
                    TF_CPP_MIN_LOG_LEVEL="2", SMPLR_DATA_PARALLEL_ON_CPU="1",
                    XLA_FLAGS="--xla_force_host_platform_device_count=2", **env)
    return subprocess.run([sys.executable, "-m", "training", "dae", gpu_id] + [str(a) for a in args],
                          cwd=REPO_ROOT, env=full_env, capture_output=True, text=True, timeout=900)


def _weights(folder):
    """{file:dataset: array} of every float array in a checkpoint slot."""
    out = {}
    for path in sorted(folder.glob("*.h5")):
        with h5py.File(path, "r") as handle:
            names = []
            handle.visit(names.append)
            out.update({f"{path.name}:{name}": np.asarray(handle[name]) for name in names
                        if isinstance(handle[name], h5py.Dataset) and handle[name].dtype.kind == "f"})
    return out


@pytest.mark.parametrize("backend", [pytest.param("jax", marks=requires_jax), "tensorflow"])
def test_data_parallel_cli_dae_run_matches_one_device(cloth3d_root, tmp_path, backend):
    from training.summaries import read_scalars

    common = ["--data", cloth3d_root, "--name", "d", "--epochs", EPOCHS, "--steps", STEPS, "--batch-size", 4,
              "--log-every", 1, "--lr", LR] + (["--dae-dropout", 0] if backend == "tensorflow" else [])
    one = _cli(backend, "-1", common + ["--tmp", tmp_path / "one"])
    assert one.returncode == 0, one.stderr[-3000:]
    crashed = _cli(backend, "0,1", common + ["--tmp", tmp_path / "two"], SMPLR_TEST_EXIT_AFTER_EPOCH="1")
    assert crashed.returncode == 3, crashed.stderr[-3000:]
    assert "on CPU devices 0,1" in crashed.stdout and "per device" in crashed.stdout
    resumed = _cli(backend, "0,1", common + ["--tmp", tmp_path / "two", "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming 'd' after epoch 1" in resumed.stdout

    logs = [read_scalars(tmp_path / run / "logs" / "d") for run in ("one", "two")]
    losses = [np.array([value for _, value in log["train/loss"]]) for log in logs]
    assert len(losses[0]) == EPOCHS * STEPS
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-4)
    states = [json.loads((tmp_path / run / "checkpoints" / "d" / "latest" / "state.json").read_text())
              for run in ("one", "two")]
    for first, second in zip(states[0]["history"], states[1]["history"]):
        for key, value in first["val"].items():
            assert second["val"][key] == pytest.approx(value, rel=1e-4), key
    for slot in ("best", "latest"):
        slots = [tmp_path / run / "checkpoints" / "d" / slot for run in ("one", "two")]
        assert sorted(p.name for p in slots[0].iterdir()) == sorted(p.name for p in slots[1].iterdir())
        weights = [_weights(folder) for folder in slots]
        assert weights[0].keys() == weights[1].keys()
        for key, value in weights[0].items():
            if key.startswith("optimizer"):
                continue  # Adam's moments of the zero-gradient elements are float32 noise
            np.testing.assert_allclose(weights[1][key], value, atol=2 * LR * EPOCHS * STEPS, err_msg=key)


def test_data_parallel_gpu_id_lists_and_their_errors():
    from training.device import parse_gpu_ids, select_device

    assert parse_gpu_ids("0,1,3") == (0, 1, 3) and parse_gpu_ids("0,") == (0,) and parse_gpu_ids("2") is None
    for bad, message in (("0,x", "GPU indices separated by commas"), ("-1,0", "is not part of a list"),
                         ("1,1", "names a device twice")):
        with pytest.raises(TrainingError, match=message):
            parse_gpu_ids(bad)
    with pytest.raises(TrainingError, match="this command runs on one device"):
        select_device("0,1")
    with pytest.raises(TrainingError, match=r"--batch-size 6 does not split evenly over the 4 devices of "
                                            r"GPU_ID 0,1,2,3: .* give a multiple of 4"):
        select_device("0,1,2,3", data_parallel_batch=6)
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        with pytest.raises(TrainingError, match=r"GPU_ID 0,1 does not exist: .*devices found: .*CPU"):
            select_device("0,1", data_parallel_batch=4)


def test_data_parallel_uneven_batch_is_one_error_line(cloth3d_root, tmp_path):
    result = _cli("tensorflow", "0,1,2", ["--data", cloth3d_root, "--tmp", tmp_path, "--batch-size", 4])
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --batch-size 4 does not split evenly over the 3 devices of GPU_ID 0,1,2: the batch size is the "
        "global batch, give a multiple of 3"]
