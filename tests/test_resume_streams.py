"""A run killed after an epoch and resumed draws the same random streams
(batch order, input noise, dropout masks) as one that went through.

Reference: the same command run uninterrupted; the crash is the runner's test
hook (``SMPLR_TEST_EXIT_AFTER_EPOCH``, ``os._exit`` right after the epoch's
checkpoints), as in tests/test_training.py.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from training.checkpoints import CheckpointStore

REPO = Path(__file__).resolve().parents[1]


def _train(args, backend, exit_after_epoch=None):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="-1", TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1",
               PYTHONPATH=str(REPO), KERAS_BACKEND=backend, JAX_PLATFORMS="cpu")
    env.pop("SMPLR_TEST_EXIT_AFTER_EPOCH", None)
    if exit_after_epoch is not None:
        env["SMPLR_TEST_EXIT_AFTER_EPOCH"] = str(exit_after_epoch)
    return subprocess.run([sys.executable, "-m", "training"] + [str(a) for a in args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_resumed_dae_run_repeats_the_uninterrupted_epochs(tmp_path, cloth3d_root, backend):
    if backend == "jax":
        pytest.importorskip("jax")
    # Dropout on (the SPEC's 0.2) and input noise on: every random stream of the stage is in play.
    common = ["dae", "-1", "--data", cloth3d_root, "--tmp", tmp_path, "--epochs", "2", "--steps", "3",
              "--batch-size", "32", "--log-every", "1", "--seed", "4"]
    through = _train(common + ["--name", "through"], backend)
    assert through.returncode == 0, through.stderr[-3000:]
    crashed = _train(common + ["--name", "resumed"], backend, exit_after_epoch=1)
    assert crashed.returncode == 3, crashed.stderr[-3000:]
    resumed = _train(common + ["--name", "resumed", "--resume"], backend)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming 'resumed' after epoch 1" in resumed.stdout

    reference = CheckpointStore(tmp_path, "through").read_state("latest")
    state = CheckpointStore(tmp_path, "resumed").read_state("latest")
    assert [h["epoch"] for h in state["history"]] == [1, 2]
    for epoch in (0, 1):
        for part in ("train", "val"):
            expected, got = reference["history"][epoch][part], state["history"][epoch][part]
            assert set(got) == set(expected)
            for key in expected:
                np.testing.assert_allclose(got[key], expected[key], rtol=1e-5,
                                           err_msg=f"epoch {epoch + 1} {part} {key}")
    # The two epochs drew different batches and dropout masks: the streams moved on.
    assert reference["history"][0]["train"]["loss"] != reference["history"][1]["train"]["loss"]
    seeds = state["random_state"]["seed_generators"]
    assert len(seeds) == 2 and all(draws > 0 for _, draws in seeds)  # the DAE's two dropout layers
    assert seeds == reference["random_state"]["seed_generators"]
