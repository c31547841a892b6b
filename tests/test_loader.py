"""DataReader.loader: the TensorFlow-free batches (NumPy, worker processes) for Keras on JAX.

Checked against the tf.data pipeline on synthetic frames, against float64
NumPy references, and for determinism across worker counts and clean exits.
"""
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import DataReader
from DataReader import loader as batch_loader
from DataReader.augment import NOISE_SIGMA
from conftest import REPO_ROOT, requires_jax, run_backend

SHN_SHAPES = {"image": (256, 256, 3), "mask": (256, 256, 1), "points": (41, 3), "points2d": (41, 2),
              "rotations": (24, 3, 3), "shape": (11,), "root_camera": (3,), "path": ()}


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """3 synthetic sequences of 4 frames; `all.txt` lists the 12 frames."""
    from DataReader.synthesize import synthesize

    root = tmp_path_factory.mktemp("frames")
    lists = synthesize(root, 3, 4, seed=0, progress=False)
    (root / "all.txt").write_text("\n".join(lists["train"] + lists["val"]) + "\n")
    return root


def _pid_alive(pid):
    """Whether process `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait_gone(pids, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(_pid_alive(pid) for pid in pids):
        time.sleep(0.1)
    return [pid for pid in pids if _pid_alive(pid)]


def _assert_same_batches(first, second):
    assert len(first) == len(second)
    for a, b in zip(first, second):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_batches_equal_the_tf_pipeline_without_augmentation(frames):
    expected = list(DataReader.shn_dataset(frames, frames / "all.txt", 5, training=False))
    data = batch_loader.shn_batches(frames, frames / "all.txt", 5, training=False, workers=0)
    batches = list(data)
    assert len(data) == 12 and [len(b["path"]) for b in batches] == [5, 5, 2]
    for batch, reference in zip(batches, expected):
        assert set(batch) == set(reference) == set(SHN_SHAPES)
        for key, shape in SHN_SHAPES.items():
            assert batch[key].shape == (len(batch["path"]),) + shape, key
            if key == "path":
                assert batch[key].dtype.kind == "U"
                assert list(batch[key]) == [p.decode() for p in reference[key].numpy()]
            else:
                assert batch[key].dtype == np.float32 == reference[key].numpy().dtype, key
                np.testing.assert_allclose(batch[key], reference[key].numpy(), atol=1e-5, err_msg=key)
    # standardised per image: zero mean, unit variance
    np.testing.assert_allclose(batches[0]["image"].mean(axis=(1, 2, 3)), 0.0, atol=1e-4)
    np.testing.assert_allclose(batches[0]["image"].std(axis=(1, 2, 3)), 1.0, atol=1e-3)


def test_same_seed_same_batches_whatever_the_workers(frames):
    def take(seed, workers, count):
        with batch_loader.shn_batches(frames, frames / "all.txt", 4, training=True, seed=seed,
                                      workers=workers) as data:
            stream = data.batches()
            return [next(stream) for _ in range(count)]

    in_thread = take(3, 0, 6)  # two epochs of 3 batches
    with_workers = take(3, 2, 6)
    _assert_same_batches(in_thread, with_workers)
    other_seed = take(4, 0, 1)[0]
    assert not np.array_equal(other_seed["image"], in_thread[0]["image"])

    # an endless stream reshuffles and draws new augmentation every epoch
    epochs = [np.concatenate([b["path"] for b in in_thread[k:k + 3]]) for k in (0, 3)]
    lines = [str(frames / line) for line in (frames / "all.txt").read_text().split()]
    assert sorted(epochs[0]) == sorted(epochs[1]) == sorted(lines)
    assert list(epochs[0]) != list(epochs[1])
    # augmentation happened: the crops differ from the plain standardised reader crops
    plain = {p: b for batch in batch_loader.shn_batches(frames, frames / "all.txt", 12, training=False,
                                                        workers=0)
             for p, b in zip(batch["path"], batch["image"])}
    assert any(not np.allclose(image, plain[path], atol=1e-3)
               for path, image in zip(in_thread[0]["path"], in_thread[0]["image"]))


def test_seeded_iteration_ignores_what_came_before(frames):
    # batches(seed=...) is what the SHN stage draws each epoch from (a resumed run included).
    with batch_loader.shn_batches(frames, frames / "all.txt", 4, training=True, seed=3, workers=0) as data:
        fresh = data.batches(seed=17)
        expected = [next(fresh) for _ in range(4)]  # past the end of the first pass
        next(data.batches())
        again = data.batches(seed=17)
        _assert_same_batches(expected, [next(again) for _ in range(4)])
        assert not np.array_equal(next(data.batches(seed=18))["image"], expected[0]["image"])
    # the tf.data twin, rebuilt on targets read once, gives the dataset read from the files
    read = DataReader.shn_dataset(frames, frames / "all.txt", 4, training=True, seed=5)
    rebuilt = DataReader.shn_dataset(frames, frames / "all.txt", 4, training=True, seed=5,
                                     targets=read.loader.targets)
    assert rebuilt.loader.targets is read.loader.targets
    for first, second in zip(read, rebuilt):
        for key in ("image", "points", "path"):
            np.testing.assert_array_equal(first[key].numpy(), second[key].numpy(), err_msg=key)


def test_one_pass_per_iteration_and_close_leaves_nothing(frames):
    data = batch_loader.shn_batches(frames, frames / "all.txt", 5, training=True, seed=1, workers=2)
    first, second = list(data), list(data)
    assert [len(b["path"]) for b in first] == [5, 5]  # drop_remainder when training
    assert not np.array_equal(np.concatenate([b["path"] for b in first]),
                              np.concatenate([b["path"] for b in second]))
    pids = [p.pid for p in multiprocessing.active_children() if p.name.startswith("DataReader.loader")]
    blocks = [data._pool._slots.memory.name, data._pool._targets.memory.name]
    assert len(pids) == 2
    data.close()
    assert not [p for p in multiprocessing.active_children() if p.name.startswith("DataReader.loader")]
    assert _wait_gone(pids, 5) == []
    assert not [name for name in blocks if os.path.exists(f"/dev/shm/{name}")]
    assert len(list(data)) == 2  # a closed loader starts its workers again
    data.close()


def test_bad_input_and_worker_errors_name_the_file(frames, tmp_path):
    root = tmp_path / "frames"
    shutil.copytree(frames, root)
    with pytest.raises(ValueError, match="workers must be an int >= 0"):
        batch_loader.shn_batches(root, root / "all.txt", 4, training=False, workers=-1)
    with pytest.raises(ValueError, match="12 samples make no full batch of 16"):
        batch_loader.shn_batches(root, root / "all.txt", 16, training=True, workers=0)
    import cv2

    empty = root / "00001" / "0002.png"
    rgba = cv2.imread(str(empty), cv2.IMREAD_UNCHANGED)
    rgba[:, :, 3] = 0
    cv2.imwrite(str(empty), rgba)
    data = batch_loader.shn_batches(root, root / "all.txt", 12, training=False, workers=0)
    (batch,) = list(data)
    assert len(batch["path"]) == 11 and str(empty) not in batch["path"] and data.empty_masks_skipped == 1

    corrupt = root / "00002" / "0001.png"
    with batch_loader.shn_batches(root, root / "all.txt", 4, training=False, workers=1) as data:
        corrupt.write_bytes(corrupt.read_bytes()[:200])  # after the loader's header check
        with pytest.raises(DataReader.CLOTH3DError, match=r"00002/0001.png: corrupt or unreadable PNG"):
            list(data)


def _start(code):
    """A Python process in a session of its own (so Ctrl-C can go to its whole process group)."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO_ROOT,
                            env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


@pytest.mark.parametrize("how", ["ctrl-c", "kill"])
def test_workers_end_with_their_parent(frames, how):
    parent = _start(f"""
        import multiprocessing, sys, time
        from DataReader.loader import shn_batches
        data = shn_batches({str(frames)!r}, {str(frames / 'all.txt')!r}, 4, training=True, seed=0, workers=2)
        stream = data.batches()
        next(stream)
        print(*[p.pid for p in multiprocessing.active_children()], flush=True)
        while True:
            next(stream)
    """)
    pids = [int(pid) for pid in parent.stdout.readline().split()]
    assert len(pids) == 2, parent.stderr.read()
    if how == "ctrl-c":  # as a terminal does: to the parent and its workers
        os.killpg(parent.pid, signal.SIGINT)
    else:
        parent.kill()
    parent.wait(timeout=20)
    if how == "ctrl-c":
        assert "KeyboardInterrupt" in parent.stderr.read()
    assert _wait_gone(pids, 10) == []


@requires_jax
def test_jax_without_tensorflow(frames):
    """On JAX with TensorFlow blocked: import, load with workers after JAX is
    up, hand a batch to JAX, exit with a live iterator (no hang, no orphans)."""
    out = run_backend("jax", f"""
        import multiprocessing, sys
        import DataReader.loader as loader
        assert sys.modules.get("tensorflow") is None and "keras" not in sys.modules
        import jax.numpy as jnp
        jnp.ones(3).block_until_ready()
        stream = iter(loader.shn_batches({str(frames)!r}, {str(frames / 'all.txt')!r}, 4, training=True,
                                         seed=0, workers=2))
        batch = next(stream)
        print(float(jnp.asarray(batch["image"]).mean()))
        print(jnp.asarray(batch["points"]).shape)
        print(*[p.pid for p in multiprocessing.active_children()])
    """, timeout=120)
    mean, shape, pids = out.strip().splitlines()
    assert abs(float(mean)) < 1e-4 and shape == "(4, 41, 3)"
    assert _wait_gone([int(pid) for pid in pids.split()], 5) == []


def _smplr_arrays(count, rng):
    return DataReader.SMPLRArrays(points=rng.normal(0, 0.3, (count, 41, 3)).astype(np.float32),
                                  rotations=np.tile(np.eye(3, dtype=np.float32), (count, 24, 1, 1)),
                                  shape=np.arange(count, dtype=np.float32)[:, None].repeat(11, axis=1),
                                  paths=np.array([f"{k}" for k in range(count)]))


def test_smplr_batches_noise_statistics_and_epochs():
    arrays = _smplr_arrays(5000, np.random.default_rng(0))
    data = batch_loader.smplr_batches(arrays, 512, training=True, seed=7)
    batches = list(data)
    assert len(data) == 5000 and [len(b["points"]) for b in batches] == [512] * 9
    ids = np.concatenate([b["shape"][:, 0] for b in batches]).astype(int)
    assert len(set(ids)) == len(ids) and not np.array_equal(ids, np.sort(ids))  # shuffled, no repeats
    for batch in batches:
        np.testing.assert_array_equal(batch["points"], arrays.points[batch["shape"][:, 0].astype(int)])
        assert all(batch[key].dtype == np.float32 for key in batch)
    noise = np.concatenate([b["noisy_points"] - b["points"] for b in batches]).reshape(-1, 123).astype(np.float64)
    sigma = NOISE_SIGMA.astype(np.float64)
    np.testing.assert_allclose(noise.std(axis=0), sigma / np.sqrt(3.0), rtol=0.05)
    np.testing.assert_allclose(noise.mean(axis=0), 0.0, atol=0.05 * sigma.max())
    assert np.all(np.abs(noise) <= sigma * (1 + 1e-5) + 1e-6)

    again = batch_loader.smplr_batches(arrays, 512, training=True, seed=7)
    _assert_same_batches(batches[:1], list(again)[:1])
    stream = again.batches()
    assert not np.array_equal(next(stream)["shape"], batches[0]["shape"])  # the next epoch reshuffles
    val = list(batch_loader.smplr_batches(arrays, 512, training=False))
    assert len(val) == 10 and len(val[-1]["points"]) == 5000 - 9 * 512
    np.testing.assert_array_equal(val[0]["noisy_points"], arrays.points[:512])
    with pytest.raises(ValueError, match="5000 samples make no full batch of 6000"):
        batch_loader.smplr_batches(arrays, 6000, training=True)


def _error_bank(rows=7):
    """(rows, 41, 3) errors whose row k is k + 1 mm along every axis: each noise draw names its row."""
    return (np.arange(1, rows + 1, dtype=np.float32)[:, None, None] * 1e-3 * np.ones((1, 41, 3), np.float32))


def test_smplr_batches_error_bank_noise_and_bank_file_errors(tmp_path):
    arrays = _smplr_arrays(2000, np.random.default_rng(1))
    bank = _error_bank()
    batches = list(batch_loader.smplr_batches(arrays, 250, training=True, seed=3, error_bank=bank))
    noise = np.concatenate([b["noisy_points"] - b["points"] for b in batches])
    rows = np.rint(noise[:, 0, 0] * 1e3).astype(int) - 1
    np.testing.assert_allclose(noise, bank[rows], atol=1e-6)  # exactly one bank row per sample
    counts = np.bincount(rows, minlength=7)
    assert len(counts) == 7 and counts.min() > 200  # every row drawn, about uniformly (2000 / 7 = 286)
    again = list(batch_loader.smplr_batches(arrays, 250, training=True, seed=3, error_bank=bank))
    _assert_same_batches(batches[:1], again[:1])
    clean = next(iter(batch_loader.smplr_batches(arrays, 250, training=False, noise=False, error_bank=bank)))
    np.testing.assert_array_equal(clean["noisy_points"], clean["points"])

    # The bank file: what tools/shn_error_bank.py writes loads; anything else is one line naming the file.
    good = tmp_path / "bank.npz"
    np.savez(good, errors=bank, points=np.zeros_like(bank))
    np.testing.assert_array_equal(DataReader.load_error_bank(good), bank)
    cases = {"no_errors.npz": dict(points=bank), "flat.npz": dict(errors=bank.reshape(7, 123)),
             "nan.npz": dict(errors=np.where(bank > 6e-3, np.nan, bank))}
    for name, content in cases.items():
        np.savez(tmp_path / name, **content)
    (tmp_path / "cut.npz").write_bytes(good.read_bytes()[:100])
    for name, message in (("no_errors.npz", "no 'errors' array"),
                          ("flat.npz", r"'errors' must have shape \(N >= 1, 41, 3\), got \(7, 123\)"),
                          ("nan.npz", "'errors' holds values that are not finite"),
                          ("cut.npz", "cannot read the error bank"), ("missing.npz", "cannot read the error bank")):
        with pytest.raises(ValueError, match=f"{name}: {message}"):
            DataReader.load_error_bank(tmp_path / name)


def test_smplr_batches_bone_and_normal_features(frames):
    from smpl import kinematics

    arrays = DataReader.SMPLRArrays.from_list(frames, frames / "all.txt")
    template = kinematics.SPEC_BONE_TEMPLATE
    (batch,) = list(batch_loader.smplr_batches(arrays, 12, training=True, seed=0, bone_template=template))
    points = batch["noisy_points"].astype(np.float64)
    with_root = np.concatenate([np.zeros((12, 1, 3)), points], axis=1)
    vectors = points - with_root[:, kinematics.PARENTS[1:]]
    lengths = np.linalg.norm(vectors, axis=-1)
    assert batch["bones"].shape == (12, 41) and batch["normals"].shape == (12, 123)
    np.testing.assert_allclose(batch["bones"], lengths - template[1:], atol=1e-6)
    np.testing.assert_allclose(batch["normals"], (vectors / lengths[..., None]).reshape(12, 123), atol=1e-6)


def test_prefetch_fits_a_small_dev_shm(monkeypatch):
    class Stats:  # a 64 MiB /dev/shm, as Docker gives by default
        f_bavail, f_frsize = 64 * 2**20 // 4096, 4096

    monkeypatch.setattr(batch_loader.os, "statvfs", lambda folder: Stats)
    slot = 2**20
    assert batch_loader._slots_that_fit(32, 4, slot, 0) == 32
    assert batch_loader._slots_that_fit(128, 4, slot, 0) == int(64 * 0.9)
    with pytest.raises(MemoryError, match=r"/dev/shm: 58 MiB free, too little for 16 samples of 4 MiB"):
        batch_loader._slots_that_fit(64, 16, 4 * slot, 0)
