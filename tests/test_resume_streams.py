"""A run killed after an epoch and resumed draws the same random streams
(batch order, input noise or augmentation, dropout masks, synthetic stream
sequences) as one that went through.

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
    # TF_DETERMINISTIC_OPS: TensorFlow's CPU kernels otherwise sum in a thread-dependent order, and
    # Adam's first steps (m / sqrt(v) ~ sign(g)) turn that noise in near-zero gradients into lr-sized steps.
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="-1", TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1",
               PYTHONPATH=str(REPO), KERAS_BACKEND=backend, JAX_PLATFORMS="cpu", TF_DETERMINISTIC_OPS="1")
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
    reference, state = _through_and_resumed(common, backend)
    # The two epochs drew different batches and dropout masks: the streams moved on.
    assert reference["history"][0]["train"]["loss"] != reference["history"][1]["train"]["loss"]
    seeds = state["random_state"]["seed_generators"]
    assert len(seeds) == 2 and all(draws > 0 for _, draws in seeds)  # the DAE's two dropout layers
    assert seeds == reference["random_state"]["seed_generators"]


def _through_and_resumed(common, backend):
    """Train ``common`` (2 epochs) as run "through", and as run "resumed" killed after epoch 1 and
    resumed; asserts that every figure of both epochs agrees (rtol 1e-5); returns both latest states."""
    through = _train(common + ["--name", "through"], backend)
    assert through.returncode == 0, through.stderr[-3000:]
    crashed = _train(common + ["--name", "resumed"], backend, exit_after_epoch=1)
    assert crashed.returncode == 3, crashed.stderr[-3000:]
    resumed = _train(common + ["--name", "resumed", "--resume"], backend)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming 'resumed' after epoch 1" in resumed.stdout
    tmp = common[common.index("--tmp") + 1]
    reference = CheckpointStore(tmp, "through").read_state("latest")
    state = CheckpointStore(tmp, "resumed").read_state("latest")
    assert [h["epoch"] for h in state["history"]] == [1, 2]
    for epoch in (0, 1):
        for part in ("train", "val"):
            expected, got = reference["history"][epoch][part], state["history"][epoch][part]
            assert set(got) == set(expected)
            for key in expected:
                np.testing.assert_allclose(got[key], expected[key], rtol=1e-5,
                                           err_msg=f"epoch {epoch + 1} {part} {key}")
    return reference, state


@pytest.fixture(scope="module")
def synthetic_frames(tmp_path_factory):
    """A small synthetic frames root: 4 training and 4 validation frames (DataReader.synthesize)."""
    from DataReader import synthesize

    root = tmp_path_factory.mktemp("frames")
    assert synthesize.main(["--out", str(root), "--sequences", "2", "--frames", "4", "--seed", "0", "--quiet"]) == 0
    return root


#: A tiny SHN on 2-frame batches, 2 steps an epoch (one pass over the 4 training frames), dropout on;
#: a low learning rate keeps float noise in the weights (see ``_train``) far below the tolerance.
_TINY_SHN = ["--epochs", "2", "--steps", "2", "--batch-size", "2", "--num-stacks", "1", "--num-features", "16",
             "--val-steps", "1", "--log-every", "1", "--seed", "3", "--lr", "1e-4"]


def test_resumed_shn_run_repeats_the_uninterrupted_epochs(tmp_path, synthetic_frames):
    # Epoch 2 of a run that went through draws a new order and augmentation of the list; so must
    # a run resumed after epoch 1 (a run-long iterator would restart at epoch 1's batches).
    common = ["shn", "-1", "--data", synthetic_frames, "--tmp", tmp_path] + _TINY_SHN
    reference, state = _through_and_resumed(common, "tensorflow")
    assert reference["history"][0]["train"]["loss"] != reference["history"][1]["train"]["loss"]
    seeds = state["random_state"]["seed_generators"]
    assert len(seeds) == 1 and seeds[0][1] > 0  # the one stack's dropout
    assert seeds == reference["random_state"]["seed_generators"]


def test_resumed_shn_stream_run_repeats_the_uninterrupted_epochs(tmp_path, synthetic_frames):
    # Without reuse the stream's batch b is a function of (seed, b): the resumed run asks for batch 2 on.
    common = (["shn", "-1", "--data", synthetic_frames, "--tmp", tmp_path, "--stream", "--stream-pool", "0",
               "--workers", "1"] + _TINY_SHN)
    reference, state = _through_and_resumed(common, "tensorflow")
    assert reference["history"][0]["train"]["loss"] != reference["history"][1]["train"]["loss"]
    assert state["random_state"]["stream_position"] == reference["random_state"]["stream_position"] == 4
