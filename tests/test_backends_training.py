"""The training stages on Keras' JAX backend, and what crosses between backends.

The pytest process runs Keras on TensorFlow; JAX runs in subprocesses with
TensorFlow blocked (as on the GPU machine). Checked: the same weights give
the same outputs on both backends (SHN logits, DAE, SMPLR); a few JAX steps
lower the loss (DAE, a small SHN with each recipe); a checkpoint written by a
JAX run restores on TensorFlow with identical outputs; a killed JAX run
resumes with the next learning rate and Adam's step counter.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO_ROOT, requires_jax, run_backend

pytestmark = requires_jax


def _cli(args, backend="jax", timeout=900):
    env = dict(os.environ, KERAS_BACKEND=backend, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO_ROOT),
               TF_CPP_MIN_LOG_LEVEL="2")
    prelude = "import sys, runpy; sys.modules['tensorflow'] = None; sys.argv = ['training'] + sys.argv[1:]; " \
              "runpy.run_module('training', run_name='__main__')"
    return subprocess.run([sys.executable, "-c", prelude] + [str(a) for a in args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_same_weights_give_the_same_outputs_on_both_backends(tmp_path):
    import keras

    from models import DAE, SHN, SMPLR
    from smpl import SMPL, find_models

    keras.utils.set_random_seed(3)
    rng = np.random.default_rng(0)
    images = rng.normal(size=(2, 256, 256, 3)).astype(np.float32)
    points = (0.3 * rng.normal(size=(2, 123))).astype(np.float32)
    shn, dae = SHN(num_stacks=2, num_features=16), DAE()
    smplr = SMPLR(SMPL(*find_models()))
    tf_out = {"shn": np.asarray(shn(images, training=False)), "dae": np.asarray(dae(points, training=False))}
    tf_out.update({k: np.asarray(v) for k, v in smplr(points.reshape(2, 41, 3), training=False).items()})
    shn.save_weights(tmp_path / "shn.weights.h5")
    dae.save_weights(tmp_path / "dae.weights.h5")
    smplr.shape_net.save_weights(tmp_path / "shape.weights.h5")
    smplr.pose_net.save_weights(tmp_path / "pose.weights.h5")
    np.savez(tmp_path / "inputs.npz", images=images, points=points)

    run_backend("jax", f"""
        import numpy as np
        from models import DAE, SHN, SMPLR
        from smpl import SMPL, find_models
        d = {str(tmp_path)!r}
        inputs = np.load(d + "/inputs.npz")
        shn, dae = SHN(num_stacks=2, num_features=16), DAE()
        smplr = SMPLR(SMPL(*find_models()))
        shn.build((1, 256, 256, 3)); dae(inputs["points"][:1])  # the variables, before loading
        smplr.shape_net(np.zeros((1, 41), np.float32)); smplr.pose_net(np.zeros((1, 123), np.float32))
        shn.load_weights(d + "/shn.weights.h5"); dae.load_weights(d + "/dae.weights.h5")
        smplr.shape_net.load_weights(d + "/shape.weights.h5"); smplr.pose_net.load_weights(d + "/pose.weights.h5")
        out = {{"shn": np.asarray(shn(inputs["images"], training=False)),
               "dae": np.asarray(dae(inputs["points"], training=False))}}
        out.update({{k: np.asarray(v) for k, v in smplr(inputs["points"].reshape(2, 41, 3), training=False).items()}})
        np.savez(d + "/jax.npz", **out)
    """)
    jax_out = np.load(tmp_path / "jax.npz")
    for key, expected in tf_out.items():
        scale = max(1.0, float(np.abs(expected).max()))
        np.testing.assert_allclose(jax_out[key], expected, atol=2e-4 * scale, rtol=1e-4, err_msg=key)


def test_jax_steps_lower_the_loss_dae_and_small_shn(cloth3d_root, tmp_path):
    out = run_backend("jax", f"""
        import json
        import numpy as np
        from pathlib import Path
        from training.config import resolve_paths, stage_config
        from training.shn_loop import SHNStage
        from training.smplr_loop import SMPLRStage
        from training.steps import to_host
        data, tmp = Path({str(cloth3d_root)!r}), Path({str(tmp_path)!r})
        losses = {{}}
        dae = SMPLRStage(resolve_paths(stage_config("dae", data=data, tmp=tmp, batch_size=32, dae_dropout=0.0,
                                                    lr0=1e-3)))
        batch = next(dae.train_batches(0))
        losses["dae"] = [to_host([dae.train_step(batch)])[0]["loss"] for _ in range(8)]
        (tmp / "one.txt").write_text("00449/0000.png\\n00742/0150.png\\n")
        for recipe in ("spec", "fast"):
            shn = SHNStage(resolve_paths(stage_config("shn", data=data, tmp=tmp, num_stacks=1, num_features=16,
                                                      batch_size=2, recipe=recipe, lr0=2e-3, workers=0,
                                                      train_list=str(tmp / "one.txt"), val_list=str(tmp / "one.txt"))))
            batch = next(shn.train_batches(0))
            losses[recipe] = [to_host([shn.train_step(batch)])[0]["loss"] for _ in range(6)]
            shn.close()
        print(json.dumps(losses))
    """)
    losses = json.loads(out.strip().splitlines()[-1])
    for key, values in losses.items():
        assert np.all(np.isfinite(values)), key
        # The DAE starts as the identity (zero residual), so its first Adam step
        # raises the loss on both backends (TF: 0.0125 -> 0.259, JAX: 0.0127 -> 0.271
        # at lr 1e-3); from there it falls.
        first = 1 if key == "dae" else 0
        assert values[-1] < values[first], (key, values)


def test_checkpoint_from_a_jax_run_restores_on_tensorflow(cloth3d_root, tmp_path):
    common = ["dae", "-1", "--data", cloth3d_root, "--tmp", tmp_path, "--name", "d", "--epochs", "1",
              "--steps", "3", "--batch-size", "32", "--dae-dropout", "0"]
    trained = _cli(common)
    assert trained.returncode == 0, trained.stderr[-3000:]
    probe = (0.2 * np.random.default_rng(1).normal(size=(4, 123))).astype(np.float32)
    np.save(tmp_path / "probe.npy", probe)
    run_backend("jax", f"""
        import numpy as np
        from models import DAE
        from training.checkpoints import load_named
        dae = DAE(dropout_rate=0.0); dae(np.zeros((1, 123), np.float32))
        load_named({str(tmp_path)!r}, "d", {{"dae": dae}})
        np.save({str(tmp_path / "jax_out.npy")!r}, np.asarray(dae(np.load({str(tmp_path / "probe.npy")!r}))))
    """)
    from models import DAE
    from training.checkpoints import load_named

    dae = DAE(dropout_rate=0.0)
    dae(np.zeros((1, 123), np.float32))
    before = np.asarray(dae(probe))
    load_named(tmp_path, "d", {"dae": dae})
    after = np.asarray(dae(probe))
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, np.load(tmp_path / "jax_out.npy"), atol=1e-5)


def test_killed_jax_run_resumes_with_the_next_learning_rate(cloth3d_root, tmp_path, monkeypatch):
    from training.checkpoints import CheckpointStore
    from training.schedules import learning_rate

    common = ["dae", "-1", "--data", cloth3d_root, "--tmp", tmp_path, "--name", "d", "--epochs", "3",
              "--steps", "2", "--batch-size", "32", "--log-every", "1"]
    monkeypatch.setenv("SMPLR_TEST_EXIT_AFTER_EPOCH", "1")  # the crash hook (training.runner)
    crashed = _cli(common)
    monkeypatch.delenv("SMPLR_TEST_EXIT_AFTER_EPOCH")
    assert crashed.returncode == 3, crashed.stderr[-3000:]
    resumed = _cli(common + ["--resume"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming 'd' after epoch 1" in resumed.stdout
    state = CheckpointStore(tmp_path, "d").read_state("latest")
    assert state["epochs_done"] == 3 and state["global_step"] == 6
    for h in state["history"]:
        assert h["lr"] == pytest.approx(learning_rate(h["epoch"] - 1, 0.01, 4.0))


def test_jax_training_run_is_quiet_and_never_imports_tensorflow(cloth3d_root, tmp_path):
    """With TensorFlow installed but not needed (JAX), a training run neither imports it (Keras'
    seeding and TensorBoard's writer would) nor prints its start-up lines."""
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO_ROOT))
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    run_cli = ("import sys, runpy; sys.argv = ['training'] + sys.argv[1:]\n"
               "try:\n    runpy.run_module('training', run_name='__main__')\n"
               "except SystemExit as end:\n"
               "    print('tensorflow imported:', 'tensorflow' in sys.modules)\n    raise")
    done = subprocess.run([sys.executable, "-c", run_cli, "dae", "-1", "--data", str(cloth3d_root), "--tmp",
                           str(tmp_path), "--epochs", "1", "--steps", "1", "--batch-size", "16", "--val-steps", "1"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "tensorflow imported: False" in done.stdout
    for noise in ("absl::InitializeLog", "cudart_stub", "oneDNN", "cuInit"):
        assert noise not in done.stderr, done.stderr[-3000:]
    from training.summaries import read_scalars
    assert "train/loss" in read_scalars(tmp_path / "logs" / "dae")  # TensorBoard files written without TensorFlow
