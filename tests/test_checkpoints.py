"""training.checkpoints: the backend-neutral slot format (Keras .weights.h5 per model,
optimizer variables in HDF5, state.json), its round trips on TensorFlow and between
TensorFlow and JAX, float16 weights, corrupt files, crash recovery and old TF slots.

The helpers at the top import no TensorFlow: the JAX subprocesses import them too.
"""
import json
import os

import numpy as np
import pytest

from conftest import requires_jax, run_backend
from training import TrainingError
from training.checkpoints import CheckpointStore, load_named


# ------------------------------------------------------------------ helpers
def small_dae(seed):
    """The project's DAE with seeded initial weights, built on (1, 123) inputs."""
    import keras

    from models.dae import DAE

    keras.utils.set_random_seed(seed)
    model = DAE()
    model(np.zeros((1, 123), "float32"))
    return model


def points(step, batch=8):
    """Fixed input points (batch, 123) for step ``step``."""
    return np.random.default_rng(1000 + step).normal(scale=0.3, size=(batch, 123)).astype("float32")


def forward_pass(model, step):
    """One training-mode pass: moves the batch-norm moving statistics."""
    model(points(step), training=True)


def adam_step(model, optimizer, step):
    """One optimizer update with fixed pseudo-gradients, the same arrays on every backend."""
    rng = np.random.default_rng(step)
    variables = model.trainable_variables
    gradients = [rng.normal(scale=0.1, size=tuple(v.shape)).astype("float32") for v in variables]
    optimizer.apply_gradients(zip(gradients, variables))


def train(model, optimizer, steps):
    for step in range(steps):
        forward_pass(model, step)
        adam_step(model, optimizer, step)


def adam(model=None):
    import keras

    optimizer = keras.optimizers.Adam(learning_rate=1e-3)
    if model is not None:
        optimizer.build(model.trainable_variables)
    return optimizer


def weights(obj):
    """Every variable's value (models: trainable then batch-norm statistics)."""
    import keras

    variables = obj.variables if isinstance(obj, keras.optimizers.Optimizer) else obj.weights
    return [np.array(v.numpy()) for v in variables]


def assert_all_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


# ------------------------------------------------------------------ TensorFlow round trips
def test_round_trip_restores_weights_and_adam_exactly(tmp_path):
    import h5py

    model = small_dae(0)
    optimizer = adam(model)
    train(model, optimizer, 3)
    saved = weights(model)
    store = CheckpointStore(tmp_path, "run")
    slot = store.save("latest", {"dae": model, "optimizer": optimizer}, {"kind": "dae", "epochs_done": 1})
    assert sorted(os.listdir(slot)) == ["dae.weights.h5", "optimizer.weights.h5", "state.json"]

    other, other_optimizer = small_dae(1), adam()  # not built: restore builds it on other's variables
    assert not np.array_equal(weights(other)[0], weights(model)[0])
    assert store.restore("latest", {"dae": other, "optimizer": other_optimizer})["epochs_done"] == 1
    assert_all_equal(weights(other), weights(model))
    assert_all_equal(weights(other_optimizer), weights(optimizer))
    assert int(other_optimizer.iterations.numpy()) == 3

    # The next update continues exactly; a fresh Adam (no moments) would not.
    fresh = small_dae(2)
    fresh.set_weights(model.get_weights())
    fresh_optimizer = adam(fresh)
    for m, o in ((model, optimizer), (other, other_optimizer), (fresh, fresh_optimizer)):
        adam_step(m, o, 3)
    assert_all_equal(weights(other), weights(model))
    assert not np.allclose(weights(fresh)[0], weights(model)[0])

    # The files are plain Keras / HDF5: Keras loads the model file by itself, the
    # optimizer file is the iteration counter, the learning rate, then Adam's moments.
    plain = small_dae(3)
    plain.load_weights(slot / "dae.weights.h5")
    assert_all_equal(weights(plain), saved)
    with h5py.File(slot / "optimizer.weights.h5", "r") as f:
        assert int(f["vars/0"][()]) == 3 and len(f["vars"]) == 2 + 2 * len(model.trainable_variables)


def test_loss_scale_optimizer_round_trip(tmp_path):
    import keras

    def built():
        model = small_dae(0)
        optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(1e-3), initial_scale=1024.0)
        optimizer.build(model.trainable_variables)
        return model, optimizer

    model, optimizer = built()
    for step in range(2):
        adam_step(model, optimizer, step)
    optimizer.dynamic_scale.assign(512.0)
    store = CheckpointStore(tmp_path, "mixed")
    store.save("latest", {"shn": model, "optimizer": optimizer}, {"kind": "shn"})
    other, other_optimizer = built()
    store.restore("latest", {"shn": other, "optimizer": other_optimizer})
    assert float(other_optimizer.dynamic_scale.numpy()) == 512.0
    assert int(other_optimizer.step_counter.numpy()) == 2
    assert int(other_optimizer.inner_optimizer.iterations.numpy()) == 2
    assert_all_equal(weights(other_optimizer.inner_optimizer), weights(optimizer.inner_optimizer))
    adam_step(model, optimizer, 2)
    adam_step(other, other_optimizer, 2)
    assert_all_equal(weights(other), weights(model))

    # A plain Adam cannot take the loss-scale optimizer's variables: one line, the path.
    with pytest.raises(TrainingError, match=r"optimizer\.weights\.h5 does not match the optimizer"):
        store.restore("latest", {"shn": small_dae(1), "optimizer": adam(small_dae(1))})


def test_float16_weights_load_to_float16_precision(tmp_path):
    import h5py

    model = small_dae(0)
    optimizer = adam(model)
    train(model, optimizer, 2)
    store = CheckpointStore(tmp_path, "small")
    full = store.save("latest", {"dae": model}, {"kind": "dae"})
    full_size = (full / "dae.weights.h5").stat().st_size
    slot = store.save("best", {"dae": model, "optimizer": optimizer}, {"kind": "dae"}, weights_dtype="float16")
    with h5py.File(slot / "dae.weights.h5", "r") as f:
        dtypes = set()
        f.visititems(lambda name, item: dtypes.add(item.dtype) if isinstance(item, h5py.Dataset) else None)
    assert dtypes == {np.dtype("float16")}
    assert (slot / "dae.weights.h5").stat().st_size < 0.6 * full_size
    assert store.read_state("best")["weights_dtype"] == "float16"

    other, other_optimizer = small_dae(1), adam()
    store.restore("best", {"dae": other, "optimizer": other_optimizer})
    for restored, original in zip(weights(other), weights(model)):
        assert restored.dtype == np.float32
        np.testing.assert_array_equal(restored, original.astype(np.float16).astype(np.float32))
        np.testing.assert_allclose(restored, original, rtol=2.0 ** -11, atol=6e-8)
    assert_all_equal(weights(other_optimizer), weights(optimizer))  # the optimizer stays float32


def test_float16_keeps_arrays_that_overflow_it(tmp_path):
    """Batch-norm moving variances of a trained SHN reach 1e5-1e7: stored as float16
    they became inf (found in the first H200 run), so such arrays stay float32."""
    model = small_dae(0)
    big = [v for v in model.non_trainable_variables if "moving_variance" in v.path][0]
    big.assign(np.full(big.shape, 3.0e6, np.float32))
    store = CheckpointStore(tmp_path, "small")
    store.save("best", {"dae": model}, {"kind": "dae"}, weights_dtype="float16")
    other = small_dae(1)
    store.restore("best", {"dae": other})
    restored = [v for v in other.non_trainable_variables if "moving_variance" in v.path][0]
    np.testing.assert_array_equal(np.asarray(restored), np.full(big.shape, 3.0e6, np.float32))
    for restored, original in zip(weights(other), weights(model)):
        assert np.all(np.isfinite(restored))
        np.testing.assert_allclose(restored, original, rtol=2.0 ** -11, atol=6e-8)


# ------------------------------------------------------------------ bad files
def test_corrupt_files_give_one_line_naming_the_path(tmp_path):
    model = small_dae(0)
    optimizer = adam(model)
    store = CheckpointStore(tmp_path, "bad")
    slot = store.save("latest", {"dae": model, "optimizer": optimizer}, {"kind": "dae", "epochs_done": 1})

    def error(objects):
        with pytest.raises(TrainingError) as info:
            store.restore("latest", objects)
        assert "\n" not in str(info.value)
        return str(info.value)

    def fresh():
        return {"dae": small_dae(1), "optimizer": adam()}

    # A truncated weights file, a truncated optimizer file.
    for name in ("dae.weights.h5", "optimizer.weights.h5"):
        path = slot / name
        original = path.read_bytes()
        path.write_bytes(original[: len(original) // 2])
        assert str(path) in error(fresh())
        path.write_bytes(original)
    store.restore("latest", fresh())  # intact again

    # The wrong architecture under the right name.
    from models.smplr import ShapeNet

    net = ShapeNet()
    net(np.zeros((1, 41), "float32"))
    message = error({"dae": net})
    assert str(slot / "dae.weights.h5") in message and "ShapeNet" in message

    # state.json: valid JSON of the wrong shape (for any key a reader uses), invalid JSON.
    state = slot / "state.json"
    good = json.loads(state.read_text())
    wrong = ["[1, 2]", '{"objects": 3}', '{"objects": "dae"}', '{"objects": ["../dae"]}', "{not json"]
    for key, value in (("kind", 5), ("config", [1]), ("history", {}), ("history", [1]), ("epochs_done", "2"),
                       ("epochs_done", -1), ("epochs_done", True), ("global_step", 1.5), ("best_epoch", "1"),
                       ("best", "0.5")):
        wrong.append(json.dumps(dict(good, **{key: value})))
    for k, text in enumerate(wrong):
        state.write_text(text)
        if k < 2:
            assert str(state) in error(fresh())
        with pytest.raises(TrainingError, match=f"corrupt checkpoint state {state}"):
            store.read_state("latest")
        with pytest.raises(TrainingError, match="corrupt checkpoint state"):
            store.prepare(resume=True)  # what --resume and train_all.py --resume read
    state.write_text(json.dumps(dict(good, best=None, best_epoch=None)))
    assert store.read_state("latest")["best"] is None
    # A corrupt slot still counts as existing: a new run does not silently replace it.
    with pytest.raises(TrainingError, match="already exists"):
        store.prepare()

    # A slot that lost an object file is incomplete, and says which.
    state.write_text(json.dumps({"kind": "dae", "objects": ["dae", "optimizer"]}))
    (slot / "optimizer.weights.h5").unlink()
    assert "missing optimizer.weights.h5" in error(fresh())


def test_kill_between_renames_recovers_the_previous_slot(tmp_path):
    store, scratch = CheckpointStore(tmp_path, "crash"), CheckpointStore(tmp_path, "scratch")
    first, second = small_dae(0), small_dae(1)
    store.save("latest", {"dae": first}, {"kind": "dae", "epochs_done": 1})
    slot = store.dir / "latest"
    old, partial = store.dir / ".latest.old", store.dir / ".latest.partial"

    # Killed between the renames: the old copy moved aside, the new one complete in
    # .partial but not renamed. The old copy is current again.
    os.rename(scratch.save("latest", {"dae": second}, {"kind": "dae", "epochs_done": 2}), partial)
    os.rename(slot, old)
    assert not slot.exists()
    restored = small_dae(2)
    assert store.restore("latest", {"dae": restored})["epochs_done"] == 1
    assert slot.is_dir() and not old.exists()
    assert_all_equal(weights(restored), weights(first))

    # Killed while writing .partial (no state.json yet): the slot is untouched.
    (partial / "state.json").unlink()
    assert store.read_state("latest")["epochs_done"] == 1
    # The next save replaces the leftovers.
    store.save("latest", {"dae": second}, {"kind": "dae", "epochs_done": 2})
    assert not partial.exists() and not old.exists()
    assert store.restore("latest", {"dae": restored})["epochs_done"] == 2
    assert_all_equal(weights(restored), weights(second))

    # Killed after the second rename, before removing .old: the new copy is current.
    os.rename(scratch.save("latest", {"dae": first}, {"kind": "dae", "epochs_done": 1}), old)
    assert store.read_state("latest")["epochs_done"] == 2
    store.save("latest", {"dae": first}, {"kind": "dae", "epochs_done": 3})
    assert not old.exists() and store.read_state("latest")["epochs_done"] == 3


# ------------------------------------------------------------------ old TensorFlow slots
def _legacy_slot(tmp_path, model):
    """A slot as the earlier versions wrote it: a tf.train.Checkpoint and state.json."""
    import tensorflow as tf

    slot = tmp_path / "checkpoints" / "old" / "best"
    slot.mkdir(parents=True)
    tf.train.Checkpoint(dae=model).write(str(slot / "ckpt"))
    (slot / "state.json").write_text(json.dumps({"kind": "dae", "objects": ["dae"], "epochs_done": 4}))
    return slot


def test_legacy_tensorflow_slot_loads_on_tensorflow(tmp_path):
    model = small_dae(0)
    slot = _legacy_slot(tmp_path, model)
    other = small_dae(1)
    assert load_named(tmp_path, "old", {"dae": other}, kinds=("dae",))["epochs_done"] == 4
    assert_all_equal(weights(other), weights(model))

    # A truncated ckpt.index or ckpt.data-*: one line naming the slot.
    for path in (slot / "ckpt.index", next(slot.glob("ckpt.data-*"))):
        original = path.read_bytes()
        path.write_bytes(original[:len(original) // 2])
        with pytest.raises(TrainingError) as error:
            load_named(tmp_path, "old", {"dae": small_dae(1)}, kinds=("dae",))
        assert "\n" not in str(error.value) and str(slot) in str(error.value), str(error.value)
        path.write_bytes(original)


@requires_jax
def test_legacy_tensorflow_slot_under_jax_is_one_clear_line(tmp_path):
    _legacy_slot(tmp_path, small_dae(0))
    out = run_backend("jax", f"""
        import sys
        sys.path.insert(0, "tests")
        from test_checkpoints import small_dae
        from training import TrainingError
        from training.checkpoints import load_named
        try:
            load_named({str(tmp_path)!r}, "old", {{"dae": small_dae(1)}})
        except TrainingError as exc:
            print("ERROR", exc)
    """)
    assert "ERROR checkpoint " in out and "old TensorFlow checkpoint format" in out
    assert "KERAS_BACKEND=tensorflow" in out and str(tmp_path / "checkpoints" / "old" / "best") in out


# ------------------------------------------------------------------ across backends
@pytest.fixture(scope="module")
def jax_round_trips(tmp_path_factory):
    """One JAX process without TensorFlow (its start-up and first compiles take most of
    the time) does both directions:

    - restores the checkpoint "from_tf" that TensorFlow saved after 2 steps;
    - trains its own DAE 2 steps and saves it as "from_jax".

    For each it writes the outputs, the iteration counter, the weights and the weights
    after one more step (step 2) to ``restored.npz`` / ``saved.npz``.
    """
    tmp = tmp_path_factory.mktemp("backends")
    model = small_dae(0)
    optimizer = adam(model)
    train(model, optimizer, 2)
    CheckpointStore(tmp, "from_tf").save("latest", {"dae": model, "optimizer": optimizer},
                                         {"kind": "dae", "epochs_done": 1})
    run_backend("jax", f"""
        import sys
        sys.path.insert(0, "tests")
        import numpy as np
        from test_checkpoints import adam, adam_step, points, small_dae, train, weights
        from training.checkpoints import CheckpointStore

        def record(model, optimizer, path):
            out = {{"outputs": np.asarray(model(points(99), training=False)),
                   "iterations": int(np.asarray(optimizer.iterations))}}
            out.update({{f"w{{i}}": w for i, w in enumerate(weights(model))}})
            adam_step(model, optimizer, 2)
            out.update({{f"next{{i}}": w for i, w in enumerate(weights(model))}})
            np.savez(path, **out)

        restored, restored_optimizer = small_dae(7), adam()
        objects = {{"dae": restored, "optimizer": restored_optimizer}}
        CheckpointStore({str(tmp)!r}, "from_tf").restore("latest", objects)
        record(restored, restored_optimizer, {str(tmp / "restored.npz")!r})

        model = small_dae(0)
        optimizer = adam(model)
        train(model, optimizer, 2)
        CheckpointStore({str(tmp)!r}, "from_jax").save("latest", {{"dae": model, "optimizer": optimizer}},
                                                       {{"kind": "dae", "epochs_done": 1}})
        record(model, optimizer, {str(tmp / "saved.npz")!r})
    """)
    with np.load(tmp / "restored.npz") as restored, np.load(tmp / "saved.npz") as saved:
        return {"dir": tmp, "tf_model": model, "tf_optimizer": optimizer,
                "restored": dict(restored), "saved": dict(saved)}


def _compare(jax_side, model, optimizer):
    """``model`` and ``optimizer`` (TensorFlow) hold the state that ``jax_side`` recorded."""
    count = len(model.weights)
    assert_all_equal(weights(model), [jax_side[f"w{i}"] for i in range(count)])
    np.testing.assert_allclose(np.asarray(model(points(99), training=False)), jax_side["outputs"],
                               rtol=1e-5, atol=1e-6)
    assert int(optimizer.iterations.numpy()) == int(jax_side["iterations"]) == 2
    adam_step(model, optimizer, 2)
    for i, value in enumerate(weights(model)):
        np.testing.assert_allclose(value, jax_side[f"next{i}"], rtol=1e-6, atol=1e-7)


@requires_jax
def test_checkpoint_saved_under_jax_resumes_on_tensorflow(jax_round_trips):
    model, optimizer = small_dae(5), adam()
    store = CheckpointStore(jax_round_trips["dir"], "from_jax")
    state = store.restore("latest", {"dae": model, "optimizer": optimizer})
    assert state["epochs_done"] == 1 and state["format"] == "keras-weights-h5"
    _compare(jax_round_trips["saved"], model, optimizer)


@requires_jax
def test_checkpoint_saved_on_tensorflow_resumes_under_jax(jax_round_trips):
    _compare(jax_round_trips["restored"], jax_round_trips["tf_model"], jax_round_trips["tf_optimizer"])
