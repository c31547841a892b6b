"""A run killed after an epoch and resumed draws the same random streams
(batch order, input noise or augmentation, dropout masks, synthetic stream
sequences) as one that went through.

Reference: the same command run uninterrupted; the crash is the runner's test
hook (``SMPLR_TEST_EXIT_AFTER_EPOCH``, ``os._exit`` right after the epoch's
checkpoints), as in tests/test_training.py.

To start TensorFlow (or JAX) and build the steps as few times as possible, the
training CLI's ``main`` runs in two processes: the first trains every run that
goes through and every run that crashes (there the hook's ``os._exit`` ends the
run only: it raises in ``training.runner``), the second resumes the crashed
runs, so a resumed run holds nothing in memory from the run it continues.
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from training.checkpoints import CheckpointStore

REPO = Path(__file__).resolve().parents[1]

#: Runs ``main(args)`` of ``training.cli`` for each [args, exit_after_epoch] of the JSON list in argv[1];
#: prints a JSON list of {"code": exit status, "stdout": what the run printed}.
_DRIVER = textwrap.dedent("""
    import contextlib, io, json, os, sys, types
    import training.runner as runner
    from training.cli import main

    class Crash(BaseException):
        pass

    def crash(status):
        raise Crash(status)

    # The crash hook ends this run, not the process: only training.runner's os._exit raises.
    runner.os = types.ModuleType("os")
    runner.os.__dict__.update(vars(os))
    runner.os._exit = crash
    results = []
    for args, exit_after_epoch in json.loads(sys.argv[1]):
        os.environ.pop(runner.EXIT_AFTER_EPOCH_VARIABLE, None)
        if exit_after_epoch is not None:
            os.environ[runner.EXIT_AFTER_EPOCH_VARIABLE] = str(exit_after_epoch)
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                code = main(args)
        except Crash as crashed:
            code = crashed.args[0]
        results.append({"code": code, "stdout": out.getvalue()})
    print(json.dumps(results))
""")


def _train(runs, backend):
    """Run each (args, exit_after_epoch) of ``runs`` in one fresh process; returns their results."""
    # TF_DETERMINISTIC_OPS: TensorFlow's CPU kernels otherwise sum in a thread-dependent order, and
    # Adam's first steps (m / sqrt(v) ~ sign(g)) turn that noise in near-zero gradients into lr-sized steps.
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="-1", TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1",
               PYTHONPATH=str(REPO), KERAS_BACKEND=backend, JAX_PLATFORMS="cpu", TF_DETERMINISTIC_OPS="1")
    env.pop("SMPLR_TEST_EXIT_AFTER_EPOCH", None)
    runs = [[[str(a) for a in args], exit_after_epoch] for args, exit_after_epoch in runs]
    process = subprocess.run([sys.executable, "-c", _DRIVER, json.dumps(runs)], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=900)
    assert process.returncode == 0, process.stderr[-3000:]
    return json.loads(process.stdout.strip().splitlines()[-1]), process.stderr


def _through_and_resumed(commons, backend):
    """Train each command of ``commons`` (2 epochs) as run "through", and as run "resumed" killed
    after epoch 1 and resumed; asserts that every figure of both epochs agrees (rtol 1e-5);
    returns (reference, state), both latest states, for each command."""
    commons = [[str(a) for a in common] for common in commons]
    first, stderr = _train([(common + ["--name", "through"], None) for common in commons]
                           + [(common + ["--name", "resumed"], 1) for common in commons], backend)
    second, stderr2 = _train([(common + ["--name", "resumed", "--resume"], None) for common in commons], backend)
    through, crashed = first[:len(commons)], first[len(commons):]
    states = []
    for common, run, crash, resumed in zip(commons, through, crashed, second):
        assert run["code"] == 0, run["stdout"][-2000:] + stderr[-3000:]
        assert crash["code"] == 3, crash["stdout"][-2000:] + stderr[-3000:]
        assert "epoch 2/2" not in crash["stdout"]
        assert resumed["code"] == 0, resumed["stdout"][-2000:] + stderr2[-3000:]
        assert "resuming 'resumed' after epoch 1" in resumed["stdout"]
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
                                               err_msg=f"{' '.join(common)} epoch {epoch + 1} {part} {key}")
        states.append((reference, state))
    return states


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_resumed_dae_run_repeats_the_uninterrupted_epochs(tmp_path, cloth3d_root, backend):
    if backend == "jax":
        pytest.importorskip("jax")
    # Dropout on (the SPEC's 0.2) and input noise on: every random stream of the stage is in play.
    common = ["dae", "-1", "--data", cloth3d_root, "--tmp", tmp_path, "--epochs", "2", "--steps", "3",
              "--batch-size", "32", "--log-every", "1", "--seed", "4"]
    [(reference, state)] = _through_and_resumed([common], backend)
    # The two epochs drew different batches and dropout masks: the streams moved on.
    assert reference["history"][0]["train"]["loss"] != reference["history"][1]["train"]["loss"]
    seeds = state["random_state"]["seed_generators"]
    assert len(seeds) == 2 and all(draws > 0 for _, draws in seeds)  # the DAE's two dropout layers
    assert seeds == reference["random_state"]["seed_generators"]


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


def test_resumed_shn_list_and_stream_runs_repeat_the_uninterrupted_epochs(tmp_path, synthetic_frames):
    listed = ["shn", "-1", "--data", synthetic_frames, "--tmp", tmp_path / "list"] + _TINY_SHN
    streamed = (["shn", "-1", "--data", synthetic_frames, "--tmp", tmp_path / "stream", "--stream",
                 "--stream-pool", "0", "--workers", "1"] + _TINY_SHN)
    (reference, state), (stream_reference, stream_state) = _through_and_resumed([listed, streamed], "tensorflow")

    # The list: epoch 2 of a run that went through draws a new order and augmentation of the list; so must
    # a run resumed after epoch 1 (a run-long iterator would restart at epoch 1's batches).
    assert reference["history"][0]["train"]["loss"] != reference["history"][1]["train"]["loss"]
    seeds = state["random_state"]["seed_generators"]
    assert len(seeds) == 1 and seeds[0][1] > 0  # the one stack's dropout
    assert seeds == reference["random_state"]["seed_generators"]

    # The stream: without reuse its batch b is a function of (seed, b): the resumed run asks for batch 2 on.
    assert stream_reference["history"][0]["train"]["loss"] != stream_reference["history"][1]["train"]["loss"]
    assert stream_state["random_state"]["stream_position"] == stream_reference["random_state"]["stream_position"] == 4


def test_corrupt_stream_position_is_one_line_naming_the_state_file(tmp_path):
    """A `latest` state whose stream_position is not an integer >= 0 stops the resume with a
    TrainingError naming state.json, before anything is restored."""
    from types import SimpleNamespace

    from training import TrainingError
    from training.shn_loop import SHNStage

    stage = SimpleNamespace(config=SimpleNamespace(checkpoint_dir=tmp_path / "shn"), stream=None)
    for bad in ("12", -1, 2.5, True):
        with pytest.raises(TrainingError, match=r"corrupt checkpoint state .*latest/state.json: stream_position"):
            SHNStage.restore_random_state(stage, {"stream_position": bad})
