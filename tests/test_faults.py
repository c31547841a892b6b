"""Faults that must lose nothing (issue 14): crafted model pickles, --overwrite on
bad data, a kill during the first checkpoint save, killed and failed test.py
runs, and TensorFlow's start-up lines.

References: files on disk before and after (bytes, listings), marker files a
crafted pickle would create, the real CLOTH3D++ samples with a NaN put into a
joints array or a frame cut short after its header.
"""
import hashlib
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io

REPO = Path(__file__).resolve().parents[1]
#: A TensorFlow C++ log line ("I0000 00:00:17... port.cc:153] ...") or absl's notice before them.
TF_LOG_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d|absl::InitializeLog|oneDNN|cudart_stub|cuInit", re.M)


def _env(**extra):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="-1", PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO))
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the commands must be quiet on their own
    env.update(extra)
    return env


def _run(args, timeout=600):
    return subprocess.run([sys.executable] + [str(a) for a in args], cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=timeout)


def _digest(folder):
    """{relative path: sha1} of every file under ``folder``."""
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def _copy_samples(cloth3d_root, target, sequences=None):
    """The real samples' lists and .mat files copied to ``target`` (frames linked, not copied)."""
    target.mkdir(parents=True)
    for name in ("train.txt", "val.txt"):
        shutil.copy(cloth3d_root / name, target / name)
    for sequence in sorted(p for p in cloth3d_root.iterdir() if p.is_dir()):
        if sequences is not None and sequence.name not in sequences:
            continue
        (target / sequence.name).mkdir()
        for path in sequence.iterdir():
            if path.suffix == ".mat":
                shutil.copy(path, target / sequence.name / path.name)
            else:
                (target / sequence.name / path.name).symlink_to(path)
    return target


# ------------------------------------------------------------------ SMPL pickles are data
class _RunsShell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _OpensFile:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def test_crafted_smpl_pickle_is_refused_and_runs_nothing(tmp_path):
    import smpl
    from training.smplr_loop import load_body_model

    for payload in (_RunsShell, _OpensFile):
        marker = tmp_path / f"{payload.__name__}.marker"
        folder = tmp_path / payload.__name__
        folder.mkdir()
        for name in ("SMPL_FEMALE.pkl", "SMPL_MALE.pkl"):
            with open(folder / name, "wb") as f:  # a dict like a model file, the payload as one array
                pickle.dump({"v_template": payload(marker), "f": np.zeros((1, 3), np.uint32)}, f, protocol=2)
        with pytest.raises(smpl.SMPLModelError) as error:
            smpl.load_model(folder / "SMPL_FEMALE.pkl")
        message = str(error.value)
        assert "\n" not in message and str(folder / "SMPL_FEMALE.pkl") in message and "refused" in message
        assert ("system" if payload is _RunsShell else "open") in message
        # Through --smpl-dir as the training stages read it: one line, still nothing run.
        from training import TrainingError
        with pytest.raises(TrainingError, match="refused"):
            load_body_model(folder)
        assert not marker.exists(), f"the pickle's code ran ({payload.__name__})"


def test_missing_smpl_dir_is_named(tmp_path, monkeypatch):
    import smpl

    monkeypatch.setenv("SMPLR_SMPL_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError) as error:
        smpl.find_models()
    assert str(error.value).startswith(f"SMPLR_SMPL_DIR {tmp_path / 'nowhere'}: folder not found")
    assert "\n" not in str(error.value)
    with pytest.raises(FileNotFoundError, match=r"--smpl-dir .*: folder not found"):
        smpl.find_models(tmp_path / "also_missing")


# ------------------------------------------------------------------ training --overwrite
def _train(args, capsys):
    """``python -m training ARGS`` in this process (the same CLI, without another TensorFlow start-up):
    (exit status, stdout, stderr)."""
    from training.cli import main

    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_overwrite_keeps_the_old_run_until_the_new_one_has_a_checkpoint(tmp_path, cloth3d_root, capsys):
    from training.checkpoints import CheckpointStore

    good = _copy_samples(cloth3d_root, tmp_path / "good")
    bad = _copy_samples(cloth3d_root, tmp_path / "nan")
    body_path = bad / "00449" / "info_body.mat"
    body = {k: v for k, v in scipy.io.loadmat(str(body_path)).items() if not k.startswith("__")}
    body["joints"][3, 5, 1] = np.nan
    scipy.io.savemat(str(body_path), body)

    tmp = tmp_path / "tmp"
    common = ["dae", "-1", "--tmp", tmp, "--name", "existing", "--epochs", "1", "--steps", "2", "--batch-size", "32"]
    code, _, err = _train(common + ["--data", good], capsys)
    assert code == 0, err[-2000:]
    checkpoints, logs = tmp / "checkpoints" / "existing", tmp / "logs" / "existing"
    before, logs_before = _digest(checkpoints), _digest(logs)
    assert "best/dae.weights.h5" in before and logs_before

    # Bad data: refused with one line naming the file; the earlier run is untouched.
    code, _, err = _train(common + ["--data", bad, "--overwrite"], capsys)
    assert code == 2
    assert err.strip() == f"error: {body_path}: NaN or infinite value in 'joints' at frame 3", err
    assert _digest(checkpoints) == before and _digest(logs) == logs_before

    # A run that fails in training, before its first checkpoint: the earlier run is put back.
    code, _, err = _train(common + ["--data", good, "--overwrite", "--lr", "1e30"], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 2 and "earlier checkpoints are back" in lines[0] and "became" in lines[1], lines
    assert _digest(checkpoints) == before and _digest(logs) == logs_before
    assert sorted(p.name for p in (tmp / "checkpoints").iterdir()) == ["existing"]

    # A run that gets its first checkpoint replaces the old one, logs included.
    code, out, err = _train(common + ["--data", good, "--overwrite", "--seed", "1"], capsys)
    assert code == 0, err[-2000:]
    assert "earlier checkpoints and logs are removed" in out
    assert _digest(checkpoints)["best/dae.weights.h5"] != before["best/dae.weights.h5"]
    assert not set(_digest(logs)) & set(logs_before)  # only the new run's event file
    assert CheckpointStore(tmp, "existing").read_state("latest")["config"]["seed"] == 1
    assert sorted(p.name for p in (tmp / "checkpoints").iterdir()) == ["existing"]
    assert sorted(p.name for p in (tmp / "logs").iterdir()) == ["existing"]


def _small_model(seed):
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.layers.Dense(3)])
    model(np.zeros((1, 2), np.float32))
    return model


def test_overwrite_run_killed_before_its_first_checkpoint_is_recovered(tmp_path, capsys):
    from training.checkpoints import CheckpointStore, available_checkpoints

    store, logs = CheckpointStore(tmp_path, "run"), tmp_path / "logs" / "run"
    store.save("best", {"dae": _small_model(0)}, {"kind": "dae", "epochs_done": 4})
    store.save("latest", {"dae": _small_model(0)}, {"kind": "dae", "epochs_done": 5})
    logs.mkdir(parents=True)
    (logs / "events.old").write_text("old run")
    old = _digest(store.dir)

    # --overwrite only checks: the old run is still there and still listed.
    assert store.prepare(overwrite=True, log_dir=logs) is None
    assert _digest(store.dir) == old and available_checkpoints(tmp_path) == ["run"]
    # The new run starts writing (old run aside), saves best, is killed before its latest.
    store.set_aside(logs)
    assert available_checkpoints(tmp_path) == [] and not logs.exists()
    store.save("best", {"dae": _small_model(1)}, {"kind": "dae", "epochs_done": 1})
    logs.mkdir()
    (logs / "events.new").write_text("new run")
    capsys.readouterr()
    # The next command on the name puts the old run back, and says so.
    with pytest.raises(Exception, match="already exists"):
        CheckpointStore(tmp_path, "run").prepare(log_dir=logs)
    assert "earlier checkpoints are back" in capsys.readouterr().err
    assert _digest(store.dir) == old and sorted(os.listdir(logs)) == ["events.old"]
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["run"]

    # Killed after the new run's first latest but before the old one was deleted: the new one stays.
    store.set_aside(logs)
    store.save("latest", {"dae": _small_model(1)}, {"kind": "dae", "epochs_done": 1})
    assert CheckpointStore(tmp_path, "run").prepare(resume=True, log_dir=logs)["epochs_done"] == 1
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["run"]
    assert not (tmp_path / "logs" / ".run.replaced").exists()


# ------------------------------------------------------------------ kill during the first latest save
def test_resume_without_latest_restarts_or_resumes_from_best(tmp_path, cloth3d_root, capsys, monkeypatch):
    from training.checkpoints import CheckpointStore
    from training.summaries import read_scalars

    tmp = tmp_path / "tmp"
    common = ["dae", "-1", "--data", cloth3d_root, "--tmp", tmp, "--name", "dae", "--steps", "2",
              "--batch-size", "32"]
    monkeypatch.setenv("SMPLR_TEST_EXIT_AFTER_EPOCH", "1")  # the crash hook (training.runner)
    crashed = _run(["-m", "training"] + common + ["--epochs", "2"])
    monkeypatch.delenv("SMPLR_TEST_EXIT_AFTER_EPOCH")
    assert crashed.returncode == 3, crashed.stderr[-2000:]
    # What a kill while the first latest is being written leaves: best, and a partial latest.
    run_dir = tmp / "checkpoints" / "dae"
    os.rename(run_dir / "latest", run_dir / ".latest.partial")
    (run_dir / ".latest.partial" / "state.json").unlink()
    with open(run_dir / ".latest.partial" / "optimizer.weights.h5", "r+b") as f:
        f.truncate(100)
    store = CheckpointStore(tmp, "dae")
    assert store.has("best") and not store.has("latest")

    # train_all --resume passes --resume for it (instead of a plain run refused as existing).
    import argparse

    import train_all
    assert train_all._finished("dae", argparse.Namespace(tmp=tmp, quick=False)) is False

    code, out, err = _train(common + ["--epochs", "2", "--resume"], capsys)
    assert code == 0, err[-2000:]
    said = [line for line in out.splitlines() if line.startswith("--resume")]
    assert len(said) == 1 and "restarting it from epoch 1" in said[0], out
    state = store.read_state("latest")
    assert state["epochs_done"] == 2 and state["global_step"] == 4
    assert [h["epoch"] for h in state["history"]] == [1, 2]
    steps = [s for s, _ in read_scalars(tmp / "logs" / "dae")["train/loss"]]
    assert sorted(steps) == [1, 2, 3, 4]  # the killed run's epoch is not logged twice
    assert sorted(os.listdir(tmp / "checkpoints")) == ["dae"]

    # best from a later epoch without latest: resumed from best (weights), fresh optimizer.
    shutil.rmtree(run_dir / "latest")
    best_state = json.loads((run_dir / "best" / "state.json").read_text())
    best_state.update(epochs_done=2, best_epoch=2, history=state["history"])
    (run_dir / "best" / "state.json").write_text(json.dumps(best_state))
    code, out, err = _train(common + ["--epochs", "3", "--resume"], capsys)
    assert code == 0, err[-2000:]
    said = [line for line in out.splitlines() if line.startswith("--resume")]
    assert len(said) == 1 and "resuming from its best checkpoint (epoch 2)" in said[0], out
    assert "resuming 'dae' after epoch 2 of 3" in out
    state = store.read_state("latest")
    assert state["epochs_done"] == 3 and [h["epoch"] for h in state["history"]] == [1, 2, 3]


# ------------------------------------------------------------------ test.py results
def _tiny_checkpoints(tmp):
    """Untrained SHN (1 stack, 16 features), DAE and shape+pose checkpoints named shn, dae, smplr."""
    import keras

    from models import DAE, SHN, SMPLR
    from training.checkpoints import CheckpointStore
    from training.smplr_loop import load_body_model

    keras.utils.set_random_seed(0)
    shn = SHN(num_stacks=1, num_features=16)
    shn(np.zeros((1, 256, 256, 3), np.float32))
    dae = DAE()
    dae(np.zeros((1, 123), np.float32))
    smplr = SMPLR(load_body_model())
    smplr.shape_net(np.zeros((1, 41), np.float32))
    smplr.pose_net(np.zeros((1, 123), np.float32))
    for name, objects, config in (("shn", {"shn": shn}, {"num_stacks": 1, "num_features": 16}),
                                  ("dae", {"dae": dae}, {}),
                                  ("smplr", {"shape_net": smplr.shape_net, "pose_net": smplr.pose_net}, {})):
        kind = "shapepose" if name == "smplr" else name
        CheckpointStore(tmp, name).save("best", objects, {"kind": kind, "epochs_done": 1, "best_epoch": 1,
                                                         "config": config})


def test_test_py_results_are_atomic(tmp_path, cloth3d_root, capsys):
    from training.evaluate import main

    tmp = tmp_path / "tmp"
    _tiny_checkpoints(tmp)
    results = tmp / "results"
    args = ["-1", "shn", "dae", "smplr", "--tmp", str(tmp), "--list", "val.txt", "--batch-size", "2",
            "--max-batches", "2", "--overlays", "1"]

    # A complete run: the folder appears whole, summary.json in it, nothing beside it.
    assert main(args + ["--data", str(cloth3d_root), "--out", "done"]) == 0, capsys.readouterr().err
    done = _digest(results / "done")
    assert {"summary.json", "group_errors.png", "batch_00000.npz", "batch_00001.npz"} <= set(done)
    assert sorted(os.listdir(results)) == ["done"]

    # SIGKILL right after the first batch file is written: no results folder, a rerun is not refused.
    kill_after_first_batch = (
        "import os, signal, sys\n"
        "import training.evaluate as E\n"
        "def errors_then_kill(*a):\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "E.point_errors_mm = errors_then_kill\n"
        f"sys.exit(E.main({args + ['--data', str(cloth3d_root), '--out', 'killed']!r}))\n")
    killed = subprocess.run([sys.executable, "-c", kill_after_first_batch], cwd=REPO, env=_env(),
                            capture_output=True, text=True, timeout=600)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not (results / "killed").exists()
    assert (results / ".killed.partial" / "batch_00000.npz").is_file()  # it was killed mid-way
    assert main(args + ["--data", str(cloth3d_root), "--out", "killed"]) == 0, capsys.readouterr().err
    assert sorted(os.listdir(results)) == ["done", "killed"]
    assert json.loads((results / "killed" / "summary.json").read_text())["num_samples"] == 4

    # --overwrite with a frame that is corrupt past its header (found while batch 2 is read):
    # an error, and the earlier results are all still there.
    data = _copy_samples(cloth3d_root, tmp_path / "corrupt", sequences=("05325",))
    frame = data / (data / "val.txt").read_text().split()[2]
    payload = frame.resolve().read_bytes()
    frame.unlink()
    frame.write_bytes(payload[:200])  # signature and IHDR intact, image data cut short
    capsys.readouterr()
    assert main(args + ["--data", str(data), "--out", "done", "--overwrite"]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert _digest(results / "done") == done
    assert sorted(os.listdir(results)) == ["done", "killed"]

    # --overwrite that completes replaces the folder as a whole.
    assert main(args + ["--data", str(cloth3d_root), "--out", "done", "--overwrite", "--max-batches", "1"]) == 0
    assert not (results / "done" / "batch_00001.npz").exists()
    assert json.loads((results / "done" / "summary.json").read_text())["num_samples"] == 2
    assert sorted(os.listdir(results)) == ["done", "killed"]


# ------------------------------------------------------------------ quiet start-up
def test_tensorflow_start_up_lines_hidden_unless_verbose(tmp_path, cloth3d_root):
    from training.checkpoints import CheckpointStore

    # Each command starts TensorFlow, then stops at a one-line error.
    quiet = _run(["test.py", "-1", "a", "b", "c", "--tmp", tmp_path, "--data", tmp_path])
    assert quiet.returncode == 2
    assert quiet.stderr == f"error: data list not found: {tmp_path / 'val.txt'} (give --data DIR and --list FILE)\n"
    verbose = _run(["test.py", "-1", "a", "b", "c", "--tmp", tmp_path, "--data", tmp_path, "--verbose"])
    assert verbose.returncode == 2 and TF_LOG_LINE.search(verbose.stderr), verbose.stderr  # there were lines to hide

    # train_all.py runs python -m training per stage: an existing name stops the dae stage.
    slot = CheckpointStore(tmp_path, "dae").dir / "best"
    slot.mkdir(parents=True)
    (slot / "state.json").write_text(json.dumps({"kind": "dae", "objects": []}))
    chain = _run(["train_all.py", "-1", "--data", cloth3d_root, "--tmp", tmp_path, "--stages", "dae"])
    assert chain.returncode == 1
    assert "already exists" in chain.stderr and not TF_LOG_LINE.search(chain.stderr + chain.stdout), chain.stderr
