"""The endless synthetic stream (DataReader.stream) and the in-memory rendering it uses.

References: the file pipeline itself (a stream sequence written as files by
`synthesize` and read back by `CLOTH3DReader`), a float64 NumPy SMPL written
in tests/test_synthesize.py (`lbs_numpy`), the batches of `shn_batches` (the
layout the training loops take), and the alpha mask under the projected
ground truth. Most tests use the small body-like model of test_synthesize.
"""
import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

import DataReader
from DataReader import synthesize
from DataReader.augment import standardize_image_np
from DataReader.cloth3d import CLOTH3DReader
from DataReader.stream import BatchMaker, StreamConfig, SyntheticStream, stream_sequence
from conftest import REPO_ROOT, run_backend
from test_synthesize import body_like_model, lbs_numpy


@pytest.fixture(scope="module")
def body_models():
    return body_like_model("female"), body_like_model("male")


def _mask_hits(batch):
    """Fraction of the 41 points2d of every sample that fall on its mask (> 0)."""
    px = np.round(batch["points2d"]).astype(int)
    inside = np.all((px >= 0) & (px < 256), axis=2)
    rows, cols = np.clip(px[..., 1], 0, 255), np.clip(px[..., 0], 0, 255)
    on = np.take_along_axis(batch["mask"][..., 0].reshape(len(px), -1), (rows * 256 + cols), axis=1) > 0
    return float(np.mean(on & inside))


def test_numpy_skinning_matches_float64_smpl_with_pose_blend_shapes(body_models):
    female = body_models[0]
    rng = np.random.default_rng(4)
    posed = dataclasses.replace(female, posedirs=rng.normal(0.0, 0.01, female.posedirs.shape))
    body = synthesize.BodyModel.load((posed, posed))
    poses = rng.normal(0.0, 0.4, (3, 72))
    betas = rng.normal(0.0, 1.0, 10)
    rotations = Rotation.from_rotvec(poses.reshape(-1, 3)).as_matrix().reshape(3, 24, 3, 3)
    vertices, joints = body.pose(rotations, np.concatenate([betas, [-1.0]]))
    for t in range(3):
        expected_vertices, expected_joints = lbs_numpy(posed, poses[t], betas)
        np.testing.assert_allclose(vertices[t], expected_vertices, atol=1e-5)  # float32 blend: 10 um
        np.testing.assert_allclose(joints[t], expected_joints, atol=1e-9)


def test_stream_sample_equals_the_file_pipeline(tmp_path, body_models):
    """A stream sequence written as files and read by CLOTH3DReader gives the same
    ground truth and (up to anti-aliasing) the same crop as the stream's sample."""
    maker = BatchMaker(StreamConfig(batch_size=4, seed=3, augmentation=0, models=body_models))
    drawn, sequence, _ = stream_sequence(maker.config, maker.body, 7)
    frames = maker.render_sequence(7)
    folder = tmp_path / "00007"
    folder.mkdir()
    synthesize.write_info(folder, drawn.params)
    synthesize.write_info_body(folder, drawn.joints, drawn.vertices[:, maker.body.landmark_ids], drawn.rotations)
    reader = CLOTH3DReader(tmp_path)
    for t, frame in enumerate(frames):
        rgba = synthesize.render_frame(synthesize.frame_scene(drawn, maker.body, t), drawn.params.cam_loc,
                                       np.random.default_rng(0))
        cv2.imwrite(str(folder / f"{t:04d}.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
        expected, got = reader.load(f"00007/{t:04d}.png"), maker.sample(frame, None)
        for key in ("points", "rotations", "shape", "root_camera"):
            np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
        np.testing.assert_allclose(got["points2d"], expected["points2d"], atol=1e-3)
        both = (got["mask"] > 0.5) & (expected["mask"] > 0.5)
        assert both.sum() / ((got["mask"] > 0.5) | (expected["mask"] > 0.5)).sum() > 0.97
        assert np.abs(got["mask"] - expected["mask"]).mean() < 0.01
        difference = np.abs(got["image"] - standardize_image_np(expected["image"]))[both[..., 0]]
        assert difference.mean() < 0.1  # standard deviations of the image (silhouette and background resampling)
        assert got["path"] == f"stream/3/00000007/{t:04d}"


def test_batches_have_the_pipeline_layout_and_points_on_the_mask(tmp_path, body_models):
    synthesize.synthesize(tmp_path / "frames", 1, 2, seed=0, models=body_models, progress=False)
    reference = next(iter(DataReader.shn_batches(tmp_path / "frames", tmp_path / "frames" / "train.txt", 2,
                                                 training=True, seed=0, workers=0)))
    with SyntheticStream(12, seed=5, workers=0, models=body_models, flip=True, frames_per_sequence=3) as stream:
        batch = stream.next_batch()
        assert stream.stats()["fresh_fraction"] == 1.0 and stream.stats()["made"] == 12
    assert sorted(batch) == sorted(reference)
    for key, value in batch.items():
        assert value.shape[1:] == reference[key].shape[1:] and value.dtype.kind == reference[key].dtype.kind, key
        assert value.dtype == reference[key].dtype or key == "path", key
        assert len(value) == 12
    assert np.allclose(batch["image"].mean(axis=(1, 2, 3)), 0.0, atol=1e-3)
    assert np.allclose(batch["image"].std(axis=(1, 2, 3)), 1.0, atol=0.06)  # noise may be added
    assert _mask_hits(batch) >= 0.95  # points, augmentation and crop agree
    assert len(set(batch["path"])) == 12 and batch["path"][3] == "stream/5/00000001/0000"
    assert 0.05 < (batch["mask"] > 0.5).mean() < 0.6
    bodies = {tuple(np.round(s, 6)) for s in batch["shape"]}
    assert len(bodies) == 4  # 12 frames of 4 sequences, each its own body


def test_pool_reuses_frames_with_a_new_augmentation(body_models):
    config = StreamConfig(batch_size=8, seed=1, models=body_models, frames_per_sequence=2)
    maker = BatchMaker(config, pool_capacity=8)
    first = {key: np.empty((8,) + shape, np.float32) for key, shape in DataReader.stream.BATCH_FIELDS.items()}
    second = {key: np.empty_like(value) for key, value in first.items()}
    first_paths, fresh = maker.make(0, 8, first)
    assert fresh == 8 and len(maker.pool) == 8
    second_paths, fresh = maker.make(1, 3, second)
    assert fresh == 3 and maker.frames == 8 + 4  # 3 new frames need 2 sequences of 2
    assert second_paths[:3] == ["stream/1/00000004/0000", "stream/1/00000004/0001", "stream/1/00000005/0000"]
    assert set(second_paths[3:]) <= set(first_paths) and len(set(second_paths[3:])) == 5
    assert _mask_hits({key: value[3:] for key, value in second.items()}) >= 0.95
    assert len(maker.pool) == 8 and {f.path for f in maker.pool.frames} >= set(second_paths[:3])


def _children(pid):
    """Process ids whose parent is `pid` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs Linux /proc to list child processes")
def test_workers_give_the_same_batches_and_close_leaves_no_process(body_models):
    with SyntheticStream(6, seed=11, workers=0, models=body_models) as stream:
        in_thread = [stream.next_batch() for _ in range(10)]
    before = set(_children(os.getpid()))
    stream = SyntheticStream(6, seed=11, workers=2, models=body_models, prefetch=1, hold=1)  # 4 slots
    workers = [process.pid for process in stream._processes]
    shared = Path("/dev/shm") / stream._slots.memory.name
    assert set(workers) <= set(_children(os.getpid())) and shared.exists()
    first = stream.next_batch()
    kept = first["image"][2:]  # a view of a view of shared memory: keeps the slot from the workers
    del first
    for _ in range(9):  # the other 3 slots are reused
        last = stream.next_batch()
    assert stream.stats()["worker_modules"] == []  # no TensorFlow, Keras, JAX or PyTorch in the workers
    np.testing.assert_array_equal(kept, in_thread[0]["image"][2:])
    for key in last:
        np.testing.assert_array_equal(last[key], in_thread[9][key], err_msg=key)
    del last
    with pytest.raises(DataReader.stream.StreamError, match="holds all 4 batches"):
        [stream.next_batch() for _ in range(4)]  # noqa: B018 - keeps them all
    stream.close()
    assert not set(workers) & set(_children(os.getpid()))
    assert set(_children(os.getpid())) <= before | {_resource_tracker_pid()}
    assert not shared.exists()
    with pytest.raises(DataReader.stream.StreamError, match="closed"):
        stream.next_batch()
    other = SyntheticStream(6, seed=12, workers=0, models=body_models).next_batch()
    assert not np.array_equal(other["points"], in_thread[0]["points"])


def test_a_stream_started_later_gives_the_later_batches(body_models):
    # What a resumed SHN run asks for: batches s0, s0 + 1, ... of the stream begun at 0.
    with SyntheticStream(2, seed=5, workers=0, models=body_models, frames_per_sequence=2) as stream:
        expected = [stream.next_batch() for _ in range(3)][2]
    with SyntheticStream(2, seed=5, workers=0, models=body_models, frames_per_sequence=2) as later:
        later.seek(2)
        assert later.position == 2
        got = later.next_batch()
        assert later.position == 3
        with pytest.raises(DataReader.stream.StreamError, match="handed out"):
            later.seek(0)
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
    with pytest.raises(ValueError, match="start batch"):
        SyntheticStream(2, models=body_models, workers=0, start=-1)


def _resource_tracker_pid():
    from multiprocessing import resource_tracker
    return getattr(resource_tracker._resource_tracker, "_pid", None)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs Linux /proc to list processes")
def test_workers_die_with_their_parent():
    code = textwrap.dedent("""
        import os, sys, time
        from DataReader.stream import SyntheticStream
        stream = SyntheticStream(2, seed=0, workers=1)
        print(" ".join(str(p.pid) for p in stream._processes), flush=True)
        stream.next_batch()
        print("ready", flush=True)
        time.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))
    try:
        workers = [int(pid) for pid in parent.stdout.readline().split()]
        assert parent.stdout.readline().strip() == "ready"
        assert all(Path(f"/proc/{pid}").exists() for pid in workers)
        os.kill(parent.pid, signal.SIGKILL)  # no clean-up runs in the parent
        parent.wait(timeout=10)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in workers)
    finally:
        if parent.poll() is None:
            parent.kill()


def _alive(pid):
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) != "Z"
    except OSError:
        return False


def test_import_and_batches_without_tensorflow_or_keras(body_models):
    out = run_backend("jax", """
        import sys
        sys.modules["keras"] = None
        import DataReader.stream
        from DataReader.stream import SyntheticStream
        batch = SyntheticStream(2, seed=0, workers=0, garments="tight", cameras="cloth3d").next_batch()
        print(sorted(batch), batch["image"].shape, any(sys.modules.get(m) for m in ("tensorflow", "keras", "jax")))
    """)
    assert "(2, 256, 256, 3) False" in out and "'root_camera'" in out


def test_bad_arguments_fail_at_once_with_the_value_named(tmp_path, body_models):
    with pytest.raises(ValueError, match="batch_size"):
        SyntheticStream(0, models=body_models, workers=0)
    with pytest.raises(ValueError, match="garments 'baggy'"):
        SyntheticStream(4, models=body_models, workers=0, garments="baggy")
    with pytest.raises(ValueError, match="augmentation mode 2 needs occluder images"):
        SyntheticStream(4, models=body_models, workers=0, augmentation=2)
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        SyntheticStream(4, workers=1, smpl_dir=tmp_path)
    np.savez(tmp_path / "short.npz", poses=np.zeros((10, 72)))
    with pytest.raises(synthesize.PoseFileError, match="short.npz: has 10 frames"):
        SyntheticStream(4, models=body_models, workers=0, poses_file=tmp_path / "short.npz")
