"""Tests of the training package, train_all.py and test.py.

References: the SPEC formulas written out here, float64 loops, scipy's
rotations, hand-built crash states of a checkpoint folder, the event files
read back, the real CLOTH3D++ samples, and (for the end-to-end chain) a tiny
dataset from the synthetic generator with the SMPL layer recomputing the
saved results.
"""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from training import TrainingError
from training import metrics
from training.checkpoints import CheckpointStore, available_checkpoints, load_named
from training.config import stage_config
from training.schedules import learning_rate, shn_steps, smplr_steps

REPO = Path(__file__).resolve().parents[1]


def _env():
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="-1", TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = str(REPO)
    return env


def _run(args, timeout=600):
    """Run a repository script / module in a fresh process; returns CompletedProcess."""
    return subprocess.run([sys.executable] + [str(a) for a in args], cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=timeout)


# ------------------------------------------------------------------ schedules
def test_learning_rate_and_steps_follow_spec():
    # SPEC: lr(e) = lr0 * (1 - 1/(1 + exp(c - e/12.5))) + 1e-4, c = 10 (SHN), 4 (SMPLR).
    for epoch in (0, 1, 49, 50, 125, 199):
        shn = 0.01 * (1.0 - 1.0 / (1.0 + math.exp(10.0 - epoch / 12.5))) + 1e-4
        smplr = 0.01 * (1.0 - 1.0 / (1.0 + math.exp(4.0 - epoch / 12.5))) + 1e-4
        assert learning_rate(epoch, 0.01, 10.0) == pytest.approx(shn, rel=1e-12)
        assert learning_rate(epoch, 0.01, 4.0) == pytest.approx(smplr, rel=1e-12)
    # Half-way points of the sigmoids: epoch 125 (SHN) and 50 (SMPLR).
    assert learning_rate(125, 0.01, 10.0) == pytest.approx(0.005 + 1e-4)
    assert learning_rate(50, 0.01, 4.0) == pytest.approx(0.005 + 1e-4)
    assert learning_rate(0, 1e-4, 4.0) == pytest.approx(1e-4 * (1 - 1 / (1 + math.exp(4))) + 1e-4)
    # SHN: at most 500 * (epoch + 1) steps and one pass; SMPLR: at most 400, one pass, >= 1.
    assert [shn_steps(e, 1200) for e in (0, 1, 2, 3)] == [500, 1000, 1200, 1200]
    assert shn_steps(0, 1200, cap=30) == 30
    assert smplr_steps(10 ** 6, 256) == 400
    assert smplr_steps(5000, 256) == 19
    assert smplr_steps(200, 256) == 1
    spec = stage_config("shn").schedule
    assert (spec.epochs, spec.batch_size, spec.lr0) == (200, 6, 0.01)
    spec = stage_config("shapepose")
    assert (spec.schedule.epochs, spec.schedule.batch_size, spec.schedule.lr0, spec.run.finetune) == (
        30, 256, 1e-4, ("shape", "pose"))
    with pytest.raises(TrainingError, match="--epochs"):
        stage_config("dae", epochs=0)
    with pytest.raises(TrainingError, match="unknown stage"):
        stage_config("dea")


# ------------------------------------------------------------------ metrics
def test_point_errors_and_groups_against_float64_loops():
    rng = np.random.default_rng(0)
    pred = rng.normal(0, 0.3, (5, 41, 3))
    target = rng.normal(0, 0.3, (5, 41, 3))
    errors = metrics.point_errors_mm(pred, target)
    loop = np.array([[1000 * math.sqrt(sum((pred[b, p, c] - target[b, p, c]) ** 2 for c in range(3)))
                      for p in range(41)] for b in range(5)])
    np.testing.assert_allclose(errors, loop, rtol=1e-12)
    summary = metrics.summarize_point_errors(errors)
    assert summary["joints"] == pytest.approx(loop[:, :23].mean())
    assert summary["landmarks"] == pytest.approx(loop[:, 23:].mean())
    assert summary["all"] == pytest.approx(loop.mean())

    # Groups by SMPL joint names: point j - 1 holds SMPL joint j.
    from smpl.kinematics import SMPL_JOINT_NAMES
    names = {
        "Head": ("neck", "head"), "Torso": ("spine1", "spine2", "spine3"),
        "Shoulder": ("left_collar", "right_collar", "left_shoulder", "right_shoulder"),
        "Elbow": ("left_elbow", "right_elbow"), "Wrist": ("left_wrist", "right_wrist"),
        "Hip": ("left_hip", "right_hip"), "Knee": ("left_knee", "right_knee"),
        "Foot": ("left_ankle", "right_ankle", "left_foot", "right_foot")}
    per_point = rng.uniform(0, 100, 41)
    groups = metrics.group_errors(per_point)
    for group, joint_names in names.items():
        expected = np.mean([per_point[SMPL_JOINT_NAMES.index(n) - 1] for n in joint_names])
        assert groups[group] == pytest.approx(expected), group
    all_names = ["left_hip", "right_hip", "spine1", "left_knee", "right_knee", "left_ankle", "right_ankle",
                 "spine3", "neck", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
                 "left_wrist", "right_wrist"]
    assert groups["All"] == pytest.approx(np.mean([per_point[SMPL_JOINT_NAMES.index(n) - 1] for n in all_names]))
    with pytest.raises(ValueError, match=r"\(B, 41, 3\)"):
        metrics.point_errors_mm(np.zeros((2, 40, 3)), np.zeros((2, 40, 3)))


def test_rotation_error_degrees_against_scipy():
    rng = np.random.default_rng(1)
    target = Rotation.random(24 * 3, random_state=2).as_matrix().reshape(3, 24, 3, 3)
    angles = rng.uniform(0.0, np.pi * 0.95, (3, 24))
    axes = rng.normal(size=(3, 24, 3))
    axes /= np.linalg.norm(axes, axis=-1, keepdims=True)
    delta = Rotation.from_rotvec((axes * angles[..., None]).reshape(-1, 3)).as_matrix().reshape(3, 24, 3, 3)
    pred = delta @ target
    np.testing.assert_allclose(metrics.rotation_errors_deg(pred, target), np.degrees(angles), atol=1e-6)
    # A scaled (not orthonormal) prediction is projected back to the same rotation first.
    np.testing.assert_allclose(metrics.rotation_errors_deg(0.7 * pred, target), np.degrees(angles), atol=1e-6)


# ------------------------------------------------------------------ checkpoints
def _tiny_model(seed):
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.layers.Dense(3), keras.layers.BatchNormalization()])
    model(tf.zeros((1, 2)))
    return model


def test_checkpoints_are_atomic_and_names_are_protected(tmp_path):
    store = CheckpointStore(tmp_path, "run")
    assert store.prepare() is None
    model = _tiny_model(0)
    saved = [w.copy() for w in model.get_weights()]
    store.save("latest", {"dae": model}, {"kind": "dae", "epochs_done": 1})
    store.save("best", {"dae": model}, {"kind": "dae", "epochs_done": 1})

    # A save killed while writing leaves a partial folder: the slot still loads the old copy.
    (tmp_path / "checkpoints" / "run" / ".latest.partial").mkdir()
    (tmp_path / "checkpoints" / "run" / ".latest.partial" / "ckpt.index").write_bytes(b"garbage")
    other = _tiny_model(1)
    assert not np.allclose(other.get_weights()[0], saved[0])
    assert store.restore("latest", {"dae": other})["epochs_done"] == 1
    for a, b in zip(other.get_weights(), saved):
        np.testing.assert_array_equal(a, b)

    # Killed between the two renames (old copy moved aside, new one not in place): recovered.
    slot = tmp_path / "checkpoints" / "run" / "latest"
    os.rename(slot, slot.parent / ".latest.old")
    assert store.read_state("latest")["epochs_done"] == 1
    assert slot.is_dir()

    # An existing name is refused unless resuming or overwriting.
    with pytest.raises(TrainingError, match="--resume.*--overwrite"):
        CheckpointStore(tmp_path, "run").prepare()
    assert CheckpointStore(tmp_path, "run").prepare(resume=True)["epochs_done"] == 1
    with pytest.raises(TrainingError, match="nothing to resume"):
        CheckpointStore(tmp_path, "fresh").prepare(resume=True)
    assert available_checkpoints(tmp_path) == ["run"]
    with pytest.raises(TrainingError, match=r"checkpoints found: run"):
        load_named(tmp_path, "missing", {"dae": other})
    with pytest.raises(TrainingError, match="'dae' checkpoint, expected shn"):
        load_named(tmp_path, "run", {"dae": other}, kinds=("shn",))
    CheckpointStore(tmp_path, "run").prepare(overwrite=True)
    assert available_checkpoints(tmp_path) == ["run"]  # kept until the new run's first checkpoint


def test_device_selection_errors():
    from training.device import parse_gpu_id, select_device

    assert parse_gpu_id("-1") == -1 and parse_gpu_id("2") == 2
    with pytest.raises(TrainingError, match="GPU_ID must be an integer"):
        parse_gpu_id("gpu0")
    import tensorflow as tf
    if not tf.config.list_physical_devices("GPU"):
        with pytest.raises(TrainingError, match=r"GPU_ID 3 does not exist.*devices found: .*CPU"):
            select_device(3)
    assert select_device(-1) == "CPU"


def test_summary_logger_round_trip(tmp_path):
    from training.summaries import SummaryLogger, read_image_tags, read_scalars

    logger = SummaryLogger(tmp_path)
    logger.scalar("train/loss", 1.5, 1)
    logger.scalar("train/loss", 0.25, 2)
    logger.images("val/skeleton", np.zeros((2, 8, 8, 3), np.uint8), 2)
    logger.close()
    assert read_scalars(tmp_path)["train/loss"] == [(1, 1.5), (2, 0.25)]
    assert read_image_tags(tmp_path) == {"val/skeleton"}


def test_shn_mixed_precision_step_keeps_float32_loss_and_readout(tmp_path, cloth3d_root):
    """The GPU mixed-precision path, run on the CPU with a small SHN: float16
    compute, loss scaling, float32 loss and soft-argmax, finite values."""
    import keras

    from training.config import resolve_paths
    from training.shn_loop import SHNStage
    from training.steps import to_host
    from training.summaries import SummaryLogger

    (tmp_path / "train.txt").write_text("00449/0000.png\n00742/0150.png\n")
    (tmp_path / "val.txt").write_text("05325/0030.png\n05325/0060.png\n")
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        config = resolve_paths(stage_config("shn", data=cloth3d_root, tmp=tmp_path, num_stacks=1, num_features=16,
                                            batch_size=2, val_steps=1, log_images=1, mixed_precision=True,
                                            train_list=str(tmp_path / "train.txt"),
                                            val_list=str(tmp_path / "val.txt")))
        stage = SHNStage(config)
        stage.logger = SummaryLogger(tmp_path / "logs")
        assert stage.model.compute_dtype == "float16"
        assert isinstance(stage.optimizer, keras.optimizers.LossScaleOptimizer)
        batch = next(stage.train_batches(0))
        logits = stage.model(batch["image"], training=False)
        assert logits.dtype == "float32"  # heatmaps are read out and scored in float32
        before = [v.numpy().copy() for v in stage.model.trainable_variables[:3]]
        first = to_host([stage.train_step(batch)])[0]
        assert set(first) == {"loss", "error_all_mm", "loss_stack_1"}
        assert np.isfinite(first["loss"]) and first["loss"] == pytest.approx(first["loss_stack_1"])
        stage.train_step(batch)
        changed = [not np.array_equal(a, v.numpy()) for a, v in zip(before, stage.model.trainable_variables[:3])]
        assert any(changed)
        val = stage.validate(0, 2)
        assert np.isfinite(val["error_all_mm"]) and val["score"] == val["error_all_mm"]
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_same_seed_gives_the_same_first_batch_and_weights(tmp_path, cloth3d_root):
    from training.config import resolve_paths
    from training.smplr_loop import SMPLRStage

    def first(seed):
        config = resolve_paths(stage_config("dae", data=cloth3d_root, tmp=tmp_path, seed=seed, batch_size=16))
        stage = SMPLRStage(config)
        batch = next(stage.train_batches(0))
        return batch["noisy_points"].numpy(), batch["points"].numpy(), stage.dae.get_weights()[0]

    a, b, c = first(5), first(5), first(6)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0]) and not np.array_equal(a[2], c[2])
    # The noise is the SPEC's: |noisy - clean| <= sigma per coordinate, and it is not zero.
    from DataReader import NOISE_SIGMA
    assert np.all(np.abs(a[0] - a[1]) <= NOISE_SIGMA.reshape(41, 3) + 1e-6)
    assert np.abs(a[0] - a[1]).mean() > 0.25 * NOISE_SIGMA.mean()


# ------------------------------------------------------------------ resume
def test_killed_run_resumes_with_the_next_learning_rate(tmp_path, cloth3d_root, capsys, monkeypatch):
    from training.summaries import read_scalars

    common = ["-m", "training", "dae", "-1", "--data", cloth3d_root, "--tmp", tmp_path, "--name", "d",
              "--epochs", "3", "--steps", "2", "--batch-size", "32"]
    monkeypatch.setenv("SMPLR_TEST_EXIT_AFTER_EPOCH", "1")  # the crash hook (training.runner)
    crashed = _run(common)
    monkeypatch.delenv("SMPLR_TEST_EXIT_AFTER_EPOCH")
    assert crashed.returncode == 3, crashed.stderr[-2000:]
    store = CheckpointStore(tmp_path, "d")
    state = store.read_state("latest")
    assert state["epochs_done"] == 1 and state["global_step"] == 2

    # Not resuming an existing name: one clear line, nothing touched (in-process CLI).
    from training.cli import main
    assert main([str(a) for a in common[2:]]) == 2
    assert "already exists" in capsys.readouterr().err
    assert store.read_state("latest")["epochs_done"] == 1

    resumed = _run(common + ["--resume"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming 'd' after epoch 1" in resumed.stdout
    state = store.read_state("latest")
    assert state["epochs_done"] == 3
    assert state["global_step"] == 6  # Adam's step counter continued
    assert [h["epoch"] for h in state["history"]] == [1, 2, 3]
    for h in state["history"]:
        assert h["lr"] == pytest.approx(learning_rate(h["epoch"] - 1, 0.01, 4.0))
    logged = dict(read_scalars(tmp_path / "logs" / "d")["epoch/learning_rate"])
    assert logged[2] == pytest.approx(learning_rate(1, 0.01, 4.0), rel=1e-6)
    steps = [s for s, _ in read_scalars(tmp_path / "logs" / "d")["train/loss"]]
    assert sorted(steps) == [1, 2, 3, 4, 5, 6]
    # The run's lineage entry spans both processes: 3 epochs, 6 steps x 32 samples, minutes summed.
    (entry,) = state["lineage"]
    assert (entry["run"], entry["kind"], entry["epochs"], entry["samples"]) == ("d", "dae", 3, 192)
    assert entry["minutes"] > 0 and "finetune" not in entry and entry["config"]["batch_size"] == 32

    # --finetune carries the lineage on. A parent written before the key existed gives one entry
    # built from its state (here); one with a lineage passes all of it (the quick chain's shapepose).
    best = store.slot_dir("best") / "state.json"
    old = json.loads(best.read_text())
    old.pop("lineage")
    best.write_text(json.dumps(old))
    assert main(["dae", "-1", "--data", str(cloth3d_root), "--tmp", str(tmp_path), "--name", "e", "--epochs", "1",
                 "--steps", "2", "--batch-size", "32", "--finetune", "d"]) == 0
    lineage = CheckpointStore(tmp_path, "e").read_state("latest")["lineage"]
    assert [(e["run"], e["epochs"], e["samples"], e.get("finetune")) for e in lineage] == [
        ("d", old["epochs_done"], old["global_step"] * 32, None), ("e", 1, 64, ["d"])]
    assert "minutes" not in lineage[0] and lineage[0]["config"] == old["config"]


# ------------------------------------------------------------------ end to end
def test_quick_chain_then_test_py_on_generated_data(tmp_path, capsys):
    import tensorflow as tf

    import smpl
    from training.summaries import read_image_tags, read_scalars

    data = tmp_path / "frames"
    from DataReader import synthesize
    assert synthesize.main(["--out", str(data), "--sequences", "2", "--frames", "6", "--seed", "3", "--quiet"]) == 0
    tmp = tmp_path / "tmp"
    # The SHN at a small size (2 stacks of 32 features; test.py reads the size from its checkpoint):
    # the full-size one's graph tracing alone takes ~2 minutes on 2 CPU cores, and make demo runs
    # train_all.py with it. train_all.py then runs the other four stages, each in its own process.
    stacks = 2
    shn = _run(["-m", "training", "shn", "-1", "--data", data, "--tmp", tmp, "--quick", "--seed", "0",
                "--num-stacks", stacks, "--num-features", "32"])
    assert shn.returncode == 0, (shn.stdout[-3000:], shn.stderr[-3000:])
    chain = _run(["train_all.py", "-1", "--data", data, "--quick", "--tmp", tmp, "--synthetic", "16",
                  "--stages", "dae", "shape", "pose", "shapepose"])
    assert chain.returncode == 0, (chain.stdout[-3000:], chain.stderr[-3000:])
    assert "TRAIN SHN" not in chain.stdout
    for name in ("shn", "dae", "shape", "pose", "smplr"):
        store = CheckpointStore(tmp, name)
        assert store.has("best") and store.has("latest"), name
    # The shape+pose fine-tune records the two runs it continues (training.lineage).
    lineage = CheckpointStore(tmp, "smplr").read_state("latest")["lineage"]
    assert [(e["run"], e["kind"], e.get("finetune")) for e in lineage] == [
        ("shape", "shape", None), ("pose", "pose", None), ("smplr", "shapepose", ["shape", "pose"])]
    shn_logs = read_scalars(tmp / "logs" / "shn")
    for tag in ["train/loss", "train/learning_rate", "val/error_joints_mm", "val/error_landmarks_mm",
                "val/error_all_mm"] + [f"train/loss_stack_{s}" for s in range(1, stacks + 1)]:
        assert tag in shn_logs and all(np.isfinite(v) for _, v in shn_logs[tag]), tag
    total = [v for _, v in shn_logs["train/loss"]]
    per_stack = sum(np.array([v for _, v in shn_logs[f"train/loss_stack_{s}"]]) for s in range(1, stacks + 1))
    np.testing.assert_allclose(total, per_stack, rtol=1e-5)  # the loss is the sum over stacks
    assert "train/loss_stack_3" not in shn_logs
    assert read_image_tags(tmp / "logs" / "shn")

    test = _run(["test.py", "-1", "shn", "dae", "smplr", "--data", data, "--tmp", tmp, "--batch-size", "4"])
    assert test.returncode == 0, (test.stdout[-3000:], test.stderr[-3000:])
    assert "SMPLR" in test.stdout and "All" in test.stdout
    results = tmp / "results" / "smplr"
    summary = json.loads((results / "summary.json").read_text())
    for key in ("shn_error_mm", "dae_error_mm", "smplr_error_mm"):
        assert set(summary[key]) == {"joints", "landmarks", "all"}
        assert all(np.isfinite(v) and v > 0 for v in summary[key].values())
    assert set(summary["smplr_group_error_mm"]) == set(metrics.JOINT_GROUPS)
    import cv2
    chart = cv2.imread(str(results / "group_errors.png"))
    assert chart is not None and chart.shape[0] > 100 and chart.std() > 0
    overlays = sorted(results.glob("overlay_*.png"))
    assert len(overlays) == 4 and cv2.imread(str(overlays[0])).shape == (256, 256, 3)

    # Saved results against the figures and an independent SMPL run.
    batches = [np.load(p) for p in sorted(results.glob("batch_*.npz"))]
    assert sum(len(b["paths"]) for b in batches) == summary["num_samples"] == 6
    shn = np.concatenate([b["shn_points"] for b in batches])
    gt = np.concatenate([b["points"] for b in batches])
    assert 1000 * np.linalg.norm(shn - gt, axis=-1).mean() == pytest.approx(summary["shn_error_mm"]["all"], rel=1e-4)
    layer = smpl.SMPL(*smpl.find_models())
    b = batches[0]
    vertices, joints = layer(tf.constant(b["pose"]), tf.constant(b["shape"]))
    np.testing.assert_allclose(vertices.numpy(), b["vertices"], atol=1e-4)
    np.testing.assert_allclose(joints.numpy(), b["smpl_joints"], atol=1e-4)
    smplr_points = np.concatenate([b["smpl_joints"][:, 1:], b["vertices"][:, layer.landmark_ids]], axis=1)
    np.testing.assert_allclose(smplr_points, b["smpl_points"], atol=1e-6)

    # Earlier results are not overwritten silently; a missing checkpoint lists what exists. test.py is
    # `sys.exit(training.evaluate.main())`: these refusals run its main in this process (no second
    # TensorFlow start-up per refusal).
    from training.evaluate import main as test_py_main
    capsys.readouterr()
    assert test_py_main(["-1", "shn", "dae", "smplr", "--data", str(data), "--tmp", str(tmp)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert test_py_main(["-1", "shn", "dae", "nope", "--data", str(data), "--tmp", str(tmp)]) == 2
    err = capsys.readouterr().err
    assert "checkpoint 'nope' not found" in err and "dae, pose, shape, shn, smplr" in err


def test_pose_stage_validation_poses_smpl_with_the_nearest_rotations(tmp_path, cloth3d_root):
    """The pose stage's validation points come from SMPL posed with the projected
    rotations, as SMPLR at inference, not with the raw net matrices."""
    from keras import ops

    from models.smplr import nearest_rotation
    from training.config import resolve_paths, stage_config
    from training.smplr_loop import SMPLRStage

    stage = SMPLRStage(resolve_paths(stage_config("pose", data=cloth3d_root, tmp=tmp_path, batch_size=8, val_steps=1)))
    batch = stage.val_batches[0]
    out = stage._val_forward(batch, training=False)
    pose = np.asarray(ops.convert_to_numpy(out["pose"]), np.float64).reshape(-1, 24, 3, 3)
    projected = np.asarray(nearest_rotation(pose), np.float32)
    vertices, joints = stage.smpl_layer(projected, np.asarray(batch["shape"], np.float32))
    np.testing.assert_allclose(np.asarray(out["points"]), np.asarray(stage.smpl_layer.points41(vertices, joints)),
                               atol=1e-5)
    raw_vertices, raw_joints = stage.smpl_layer(pose.astype(np.float32), np.asarray(batch["shape"], np.float32))
    raw_points = np.asarray(stage.smpl_layer.points41(raw_vertices, raw_joints))
    assert np.abs(raw_points - np.asarray(out["points"])).max() > 1e-3
