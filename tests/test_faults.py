"""Faults that must lose nothing: crafted model pickles, --overwrite on bad data,
a kill during the first checkpoint save, killed and failed test.py runs,
TensorFlow's start-up lines, impossible option values, output folders that
cannot be written, a disk that fills during a checkpoint or results save, and
corrupt checkpoints in --resume, --finetune, test.py and train_all.py --resume.

References: files on disk before and after (bytes, listings), marker files a
crafted pickle would create, the real CLOTH3D++ samples with a NaN put into a
joints array or a frame cut short after its header; a full disk is simulated
in-process by a write that stores part of its file and raises ENOSPC.
"""
import errno
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
    shn.build((1, 256, 256, 3))
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


def test_test_py_results_are_atomic(tmp_path, cloth3d_root, capsys, monkeypatch):
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

    # A second run into the same folder is refused before any model loads.
    import training.evaluate

    def no_model_may_load(*args, **kwargs):
        raise AssertionError("models loaded before the results folder was checked")

    with monkeypatch.context() as patch:
        patch.setattr(training.evaluate, "load_stages", no_model_may_load)
        capsys.readouterr()
        assert main(args + ["--data", str(cloth3d_root), "--out", "done"]) == 2
    assert "already holds earlier results" in capsys.readouterr().err
    assert _digest(results / "done") == done

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
    summary = json.loads((results / "killed" / "summary.json").read_text())
    assert summary["num_samples"] == 4 and summary["flip_test"] is False  # no --flip-test: the plain points

    # --overwrite with a frame that is corrupt past its header (found while batch 2 is read):
    # an error, and the earlier results are all still there.
    data = _copy_samples(cloth3d_root, tmp_path / "corrupt", sequences=("05325",))
    frame = data / (data / "val.txt").read_text().split()[2]
    payload = frame.resolve().read_bytes()
    frame.unlink()
    frame.write_bytes(payload[:200])  # signature and IHDR intact, image data cut short
    capsys.readouterr()
    assert main(args + ["--data", str(data), "--out", "done", "--overwrite"]) == 2
    err = capsys.readouterr().err  # the reader's one line, out of TensorFlow's wrapped traceback
    assert err == f"error: {frame}: corrupt or unreadable PNG\n", err
    assert _digest(results / "done") == done
    assert sorted(os.listdir(results)) == ["done", "killed"]

    # A disk that fills while the second batch file is written: one line, the earlier results kept.
    real_savez = np.savez_compressed

    def second_batch_fills_the_disk(path, **arrays):
        if Path(path).name == "batch_00001.npz":
            Path(path).write_bytes(b"PK\x03\x04")
            _disk_full()
        real_savez(path, **arrays)

    with monkeypatch.context() as patch:
        patch.setattr(np, "savez_compressed", second_batch_fills_the_disk)
        capsys.readouterr()
        assert main(args + ["--data", str(cloth3d_root), "--out", "done", "--overwrite", "--overlays", "0"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: cannot write {results / '.done.partial' / 'batch_00001.npz'}: No space left on device\n"
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


# ------------------------------------------------------------------ bad numbers in options
def test_impossible_numbers_in_options_are_one_line(tmp_path, capsys):
    for name in ("train.txt", "val.txt"):  # lists that exist: the option is what is refused
        (tmp_path / name).write_text("")
    common = ["-1", "--data", tmp_path, "--tmp", tmp_path / "tmp", "--name", "x"]
    for args, message in ((["dae", "--lr", "nan"], "--lr must be a finite number > 0, got nan"),
                          (["dae", "--lr", "inf"], "--lr must be a finite number > 0, got inf"),
                          (["pose", "--lr", "-0.1"], "--lr must be a finite number > 0, got -0.1"),
                          (["shn", "--num-stacks", "0"], "--num-stacks must be >= 1")):
        code, _, err = _train(args[:1] + common + args[1:], capsys)
        assert code == 2 and err.startswith(f"error: {message}") and err.count("\n") == 1, (args, err)
    assert not (tmp_path / "tmp").exists()  # refused before anything was written


# ------------------------------------------------------------------ disk errors
def test_output_folder_that_cannot_be_written_is_found_before_any_work(tmp_path, cloth3d_root, capsys,
                                                                       monkeypatch):
    import training.evaluate
    import training.smplr_loop

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the output folder was checked")

    monkeypatch.setattr(training.smplr_loop, "SMPLRStage", no_work)
    monkeypatch.setattr(training.evaluate, "load_stages", no_work)
    (tmp_path / "file").write_text("in the way")
    common = ["dae", "-1", "--data", cloth3d_root, "--name", "d", "--epochs", "1", "--steps", "1"]

    # --tmp under a file: no checkpoints folder can be made.
    code, _, err = _train(common + ["--tmp", tmp_path / "file" / "tmp"], capsys)
    assert code == 2 and err == (f"error: cannot write to the checkpoints folder {tmp_path / 'file' / 'tmp'}"
                                 f"/checkpoints: {tmp_path / 'file'} is a file, not a folder\n"), err
    # A file where the logs folder goes.
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    (tmp / "logs").write_text("in the way")
    code, _, err = _train(common + ["--tmp", tmp], capsys)
    assert code == 2 and err.startswith(f"error: cannot write to the logs folder {tmp / 'logs'}: ") \
        and err.count("\n") == 1, err
    # test.py: a file where the results folder goes.
    (tmp / "results").write_text("in the way")
    capsys.readouterr()
    assert training.evaluate.main(["-1", "a", "b", "c", "--tmp", str(tmp), "--data", str(cloth3d_root)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot write to the results folder {tmp / 'results'}: ") \
        and err.count("\n") == 1, err

    # A folder without write permission (not a test root can run: root writes anyway).
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            code, _, err = _train(common + ["--tmp", locked], capsys)
            assert code == 2 and "cannot write to the checkpoints folder" in err and "Permission denied" in err
        finally:
            locked.chmod(0o700)


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _half_written_then_full(model, path, *args, **kwargs):
    """keras.saving.save_weights on a disk that fills up: part of the file, then ENOSPC."""
    Path(path).write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    _disk_full()


def test_full_disk_during_a_checkpoint_save_keeps_the_previous_slot(tmp_path, monkeypatch):
    import keras

    import training.checkpoints as C
    from training import TrainingError

    model = _small_model(0)
    optimizer = keras.optimizers.Adam()
    optimizer.build(model.trainable_variables)
    store = C.CheckpointStore(tmp_path, "run")
    store.save("latest", {"dae": model, "optimizer": optimizer}, {"kind": "dae", "epochs_done": 1})
    before = _digest(store.dir)

    real_rename = os.rename

    def rename_fails_into_place(source, target):
        if Path(source).name == ".latest.partial":
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_rename(source, target)

    # The disk fills while the weights, the optimizer or state.json is written; a rename fails.
    for target, replacement, reason in ((keras.saving, ("save_weights", _half_written_then_full), "No space left"),
                                        (C, ("_save_optimizer", _disk_full), "No space left"),
                                        (C.json, ("dump", _disk_full), "No space left"),
                                        (C.os, ("rename", rename_fails_into_place), "Input/output error")):
        with monkeypatch.context() as patch:
            patch.setattr(target, *replacement)
            with pytest.raises(TrainingError) as error:
                store.save("latest", {"dae": _small_model(1), "optimizer": optimizer},
                           {"kind": "dae", "epochs_done": 2})
        message = str(error.value)
        assert "\n" not in message and str(store.dir / "latest") in message and reason in message, message
        assert sorted(os.listdir(store.dir)) == ["latest"], replacement[0]  # no .partial, no .old
        assert _digest(store.dir) == before and store.read_state("latest")["epochs_done"] == 1
    restored = _small_model(2)
    store.restore("latest", {"dae": restored})
    for a, b in zip(restored.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_full_disk_while_training_is_one_line_and_leaves_no_partial(tmp_path, cloth3d_root, capsys, monkeypatch):
    import keras

    tmp = tmp_path / "tmp"
    common = ["dae", "-1", "--data", cloth3d_root, "--tmp", tmp, "--name", "d", "--epochs", "1", "--steps", "1",
              "--batch-size", "32"]
    with monkeypatch.context() as patch:
        patch.setattr(keras.saving, "save_weights", _half_written_then_full)
        code, _, err = _train(common, capsys)
    assert code == 2
    assert re.fullmatch(rf"error: cannot write the best checkpoint {re.escape(str(tmp))}/checkpoints/d/best: "
                        r"No space left on device \(.*\)\n", err), err
    leftovers = [p.name for p in tmp.rglob("*") if p.name.endswith((".partial", ".old", ".replaced"))]
    assert leftovers == [] and os.listdir(tmp / "checkpoints" / "d") == []
    # Space freed: the same command runs (the name holds no checkpoint).
    code, _, err = _train(common, capsys)
    assert code == 0, err[-2000:]


# ------------------------------------------------------------------ corrupt checkpoints
def _corrupt_states(kind):
    """state.json texts that are valid JSON of the wrong shape, with the words the error names."""
    objects = {"dae": ["dae"], "shn": ["shn"], "shapepose": ["pose_net", "shape_net"]}[kind]
    return (("[1, 2]", "expected a JSON object"),
            (json.dumps({"kind": kind, "objects": objects, "config": [1]}), "'config' is [1]"),
            (json.dumps({"kind": kind, "objects": objects, "epochs_done": "two"}), "'epochs_done' is 'two'"),
            (json.dumps({"kind": kind, "objects": "dae"}), "'objects' is 'dae'"))


def test_corrupt_checkpoints_are_one_line_in_resume_finetune_and_test_py(tmp_path, cloth3d_root, capsys):
    from training.checkpoints import available_checkpoints
    from training.evaluate import main as test_py

    tmp = tmp_path / "tmp"
    common = ["dae", "-1", "--data", cloth3d_root, "--tmp", tmp, "--steps", "1", "--batch-size", "32"]
    code, _, err = _train(common + ["--name", "d", "--epochs", "1"], capsys)
    assert code == 0, err[-2000:]
    slot = tmp / "checkpoints" / "d"

    def one_line(args, path, words=""):
        code, _, err = _train(args, capsys)
        assert code == 2 and err.count("\n") == 1 and str(path) in err and words in err, err

    def spoil(path, text=None):
        """Truncate ``path`` (or write ``text`` into it); returns what puts it back."""
        original = path.read_bytes()
        path.write_bytes(original[:len(original) // 2] if text is None else text.encode())
        return lambda: path.write_bytes(original)

    # --resume from a truncated weights file, or a state.json of the wrong shape (a truncated
    # optimizer file and the wrong shapes each reader could trip on are in tests/test_checkpoints.py).
    resume = common + ["--name", "d", "--epochs", "2", "--resume"]
    undo = spoil(slot / "latest" / "dae.weights.h5")
    one_line(resume, slot / "latest" / "dae.weights.h5")
    undo()
    for text, words in _corrupt_states("dae"):
        undo = spoil(slot / "latest" / "state.json", text)
        one_line(resume, slot / "latest" / "state.json", words)
        undo()

    # --finetune from a truncated best, or a best state.json of the wrong shape.
    finetune = common + ["--name", "f", "--epochs", "1", "--finetune", "d"]
    undo = spoil(slot / "best" / "dae.weights.h5")
    one_line(finetune, slot / "best" / "dae.weights.h5")
    undo()
    # ... and with --overwrite of an existing run: refused before the old run is touched.
    text, words = _corrupt_states("dae")[1]
    undo = spoil(slot / "best" / "state.json", text)
    before = _digest(slot)
    one_line(common + ["--name", "d", "--epochs", "1", "--overwrite", "--finetune", "d"], slot / "best" / "state.json",
             words)
    assert _digest(slot) == before
    undo()
    assert available_checkpoints(tmp) == ["d"]

    # test.py: a truncated file in the first and the last checkpoint it loads, a state.json of the
    # wrong shape, and one whose SHN settings test.py reads (the shapes every reader could trip on are
    # in tests/test_checkpoints.py).
    _tiny_checkpoints(tmp)
    args = ["-1", "shn", "dae", "smplr", "--tmp", str(tmp), "--data", str(cloth3d_root), "--batch-size", "2",
            "--max-batches", "1", "--overlays", "0"]
    best = {name: tmp / "checkpoints" / name / "best" for name in ("shn", "dae", "smplr")}
    for path, text in ((best["shn"] / "shn.weights.h5", None),
                       (best["dae"] / "state.json", _corrupt_states("dae")[1][0]),
                       (best["shn"] / "state.json", json.dumps({"kind": "shn", "objects": ["shn"],
                                                                "config": {"num_stacks": "x"}})),
                       (best["smplr"] / "pose_net.weights.h5", None)):
        undo = spoil(path, text)
        capsys.readouterr()
        assert test_py(args) == 2, path
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(path) in err, err
        undo()
    assert not (tmp / "results" / "smplr").exists()


def test_train_all_resume_with_a_corrupt_checkpoint_is_one_line(tmp_path, cloth3d_root, capsys, monkeypatch):
    import train_all

    def no_stage(*args, **kwargs):
        raise AssertionError("train_all started a stage on a corrupt checkpoint")

    monkeypatch.setattr(train_all.subprocess, "call", no_stage)
    slot = tmp_path / "checkpoints" / "dae" / "latest"
    slot.mkdir(parents=True)
    (slot / "dae.weights.h5").write_bytes(b"weights")  # the slot is complete but for its state
    for text, words in _corrupt_states("dae"):
        (slot / "state.json").write_text(text)
        capsys.readouterr()
        code = train_all.main(["-1", "--data", str(cloth3d_root), "--tmp", str(tmp_path), "--stages", "dae",
                               "--resume", "--quick"])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and str(slot / "state.json") in err and words in err, err


class _StandInPredictor:
    """What predict() needs of a Predictor, answering a fixed small body (no network to build)."""
    batch_size = 2
    checkpoints = {"shn": "a", "dae": "b", "smplr": "c"}
    flip_test = False

    def __init__(self):
        from smpl import kinematics

        self.parents = kinematics.PARENTS
        self.faces = np.array([[0, 1, 2]])

    def __call__(self, images, root_cameras=None):
        n = len(images)
        points = np.zeros((n, 41, 3), np.float32)
        return {"shn_points": points, "dae_points": points, "points": points,
                "joints": np.zeros((n, 24, 3), np.float32), "shape": np.zeros((n, 11), np.float32),
                "rotations": np.tile(np.eye(3, dtype=np.float32), (n, 24, 1, 1)),
                "vertices": np.array([[[0.0, 0.0, 0.0], [0.0, 0.3, 0.0], [0.0, 0.0, 0.3]]] * n, np.float32)}


def test_predict_output_folder_and_full_disk_are_one_line(tmp_path, cloth3d_root, capsys, monkeypatch):
    import training.predict as P

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the output folder was checked")

    (tmp_path / "file").write_text("in the way")
    with monkeypatch.context() as patch:
        patch.setattr(P, "Predictor", no_work)
        capsys.readouterr()
        assert P.main(["-1", str(cloth3d_root / "00449"), "--out", str(tmp_path / "file" / "out")]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: cannot write to the output folder {tmp_path / 'file' / 'out'}: "
                   f"{tmp_path / 'file'} is a file, not a folder\n"), err

    # The disk fills while the second image's mesh is written: one line; the first image's files are complete.
    frames = sorted((cloth3d_root / "00449").glob("*.png"))[:2]
    real_write_obj, calls = P.write_obj, []

    def second_obj_fills_the_disk(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            Path(path).write_text("v 0")
            _disk_full()
        real_write_obj(path, *args, **kwargs)

    monkeypatch.setattr(P, "write_obj", second_obj_fills_the_disk)
    out = tmp_path / "out"
    with pytest.raises(Exception) as error:
        P.predict(_StandInPredictor(), frames, out, progress=False)
    from training.cli import user_error_message
    message = user_error_message(error.value)
    assert message == (f"cannot write the results of {frames[1]} in {out}: No space left on device "
                       "(1 image written before)"), message
    first = frames[0].stem
    assert {f"{first}{s}" for s in P.OUTPUT_SUFFIXES} <= set(os.listdir(out))
    json.loads((out / f"{first}.json").read_text())
