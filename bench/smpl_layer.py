"""Samples per second of the SMPL layer against a baseline, on the Keras backend in use.

By default both run on a random model with the official SMPL's sizes (6890
vertices, 207 pose blend shapes, different female and male arrays), so the
work matches official SMPL files; `--body found` uses the files
`smpl.find_models` finds instead (the open body has no pose blend shapes and
one set of skinning weights for both genders, which the layer exploits).

TensorFlow (the default backend): the layer inside `tf.function`, which splits
the batch by gender, against a baseline in the style of the original release:
`tf.map_fn` over the batch, one sample at a time, with the gender chosen per
sample, the kinematic chain built joint by joint and a 4x4 skinning matrix
per vertex.

JAX (`KERAS_BACKEND=jax`): the layer inside `jax.jit` (fixed shapes: both
models stacked, each sample weighted onto its own) against the plain
fixed-shape alternative: skin every sample with both models and keep the one
its gender picks.

    python bench/smpl_layer.py [--batches 1 32 256] [--repeats 5] [--body smpl-sized|found]
    KERAS_BACKEND=jax python bench/smpl_layer.py

Prints a table; rounds alternate between the layer and the baseline so that
other load on the machine hits both alike. A second table times the layer
when the caller needs the joints and the 41 points only
(`forward(..., return_vertices=False)`: the 18 landmark rows skinned) against
the whole mesh with the points taken from it.
"""
import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

import smpl  # noqa: E402
from smpl import layer as smpl_layer  # noqa: E402
from smpl.constants import SMPL_PARENTS  # noqa: E402

BACKEND = keras.backend.backend()


def random_model(gender, seed, V=6890):
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.ones(24) * 0.1, V)
    regressor = rng.dirichlet(np.ones(V) * 0.01, 24)
    return smpl.SMPLModel(v_template=rng.normal(0, 0.3, (V, 3)), shapedirs=rng.normal(0, 0.01, (V, 3, 10)),
                          posedirs=rng.normal(0, 0.01, (V, 3, 207)), J_regressor=regressor, weights=weights,
                          parents=SMPL_PARENTS, faces=np.arange(300).reshape(100, 3),
                          landmark_ids=np.arange(18), gender=gender)


def load_models(body):
    if body == "found":
        paths = smpl.find_models()
        return smpl.load_model(paths[0]), smpl.load_model(paths[1]), str(paths[0].parent)
    return random_model("female", 0), random_model("male", 1), "random model of official SMPL sizes"


def per_sample_baseline_tf(female, male):
    """(rotations, shape) -> vertices, joints in the style of the original release:
    shaped templates of both genders for the batch, then `tf.map_fn` over the
    samples, each picking its gender, chaining 4x4 transforms joint by joint
    and skinning every vertex with its own blended 4x4 matrix."""
    import tensorflow as tf

    def stack(name):
        return tf.constant(np.stack([getattr(female, name), getattr(male, name)]), tf.float32)

    v_template, shapedirs, posedirs = stack("v_template"), stack("shapedirs"), stack("posedirs")
    regressor, weights = stack("J_regressor"), stack("weights")
    bottom = tf.constant([[0.0, 0.0, 0.0, 1.0]])

    def one_sample(args):
        rotations, v_shaped, g = args
        v_shaped = v_shaped[..., g]
        joints = tf.matmul(regressor[g], v_shaped)
        feature = tf.reshape(rotations[1:] - tf.eye(3), [-1])
        v_posed = v_shaped + tf.tensordot(posedirs[g], feature, axes=[[2], [0]])
        chain = [tf.concat([tf.concat([rotations[0], joints[0][:, None]], 1), bottom], 0)]
        for k in range(1, 24):
            rel = (joints[k] - joints[SMPL_PARENTS[k]])[:, None]
            chain.append(tf.matmul(chain[SMPL_PARENTS[k]], tf.concat([tf.concat([rotations[k], rel], 1), bottom], 0)))
        world = tf.stack(chain)
        rest = tf.concat([joints, tf.zeros((24, 1))], 1)[..., None]
        world = world - tf.concat([tf.zeros((24, 4, 3)), tf.matmul(world, rest)], 2)
        per_vertex = tf.tensordot(weights[g], world, axes=[[1], [0]])  # (V, 4, 4)
        homogeneous = tf.concat([v_posed, tf.ones_like(v_posed[:, :1])], 1)[..., None]
        vertices = tf.matmul(per_vertex, homogeneous)[:, :3, 0]
        return vertices, world[:, :3, 3] + tf.einsum("kab,kb->ka", world[:, :3, :3], joints)

    @tf.function
    def run(rotations, shape):
        v_shaped = tf.stack([tf.tensordot(shape[:, :10], shapedirs[g], axes=[[1], [2]]) + v_template[g]
                             for g in (0, 1)], axis=-1)
        gender = tf.cast(shape[:, 10] >= 0, tf.int32)
        vertices, joints = tf.map_fn(one_sample, (rotations, v_shaped, gender),
                                     fn_output_signature=(tf.float32, tf.float32))
        return vertices - joints[:, :1], joints - joints[:, :1]
    return run


def both_models_baseline(layer):
    """(rotations, shape) -> vertices, joints: every sample skinned with the
    female and the male model (`linear_blend_skinning` once per model on the
    whole batch), then the one its gender picks is kept."""
    models = [layer._as_tensors(layer._model_arrays(m)) for m in (layer.female, layer.male)]

    def run(rotations, shape):
        female, male = (smpl_layer.linear_blend_skinning(rotations, shape[:, :10], m, layer.parents)
                        for m in models)
        is_male = (shape[:, 10] >= 0.0)[:, None, None]
        vertices, joints = (ops.where(is_male, m, f) for f, m in zip(female, male))
        return vertices - joints[:, :1], joints - joints[:, :1]
    return run


def compiled(fn):
    """fn inside the backend's compiler (tf.function or jax.jit)."""
    if BACKEND == "tensorflow":
        import tensorflow as tf
        return tf.function(fn)
    if BACKEND == "jax":
        import jax
        return jax.jit(fn)
    return fn


def inputs(batch, seed):
    rng = np.random.default_rng(seed)
    rotations = ops.convert_to_tensor(smpl.rodrigues(rng.normal(0, 0.3, (batch, 24, 3)).astype(np.float32)))
    genders = np.where(np.arange(batch) % 2 == 0, -1.0, 1.0)[rng.permutation(batch)]
    shape = ops.convert_to_tensor(np.c_[rng.normal(size=(batch, 10)), genders].astype(np.float32))
    return rotations, shape


def time_rounds(fns, batch, repeats, rounds=3):
    """Best samples/s of each function over `rounds` rounds of `repeats` calls, rounds interleaved."""
    rotations, shape = inputs(batch, batch)
    for fn in fns:
        ops.convert_to_numpy(fn(rotations, shape)[0])  # trace and compile
    best = [0.0] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            for _ in range(repeats):
                out = fn(rotations, shape)
            ops.convert_to_numpy(out[0])
            best[i] = max(best[i], batch * repeats / (time.perf_counter() - start))
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32, 256])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--body", choices=["smpl-sized", "found"], default="smpl-sized")
    args = parser.parse_args()
    female, male, source = load_models(args.body)
    layer = smpl.SMPL(female, male, check_inputs=False)
    ours = compiled(lambda r, s: layer(r, s))
    if BACKEND == "tensorflow":
        import tensorflow as tf
        baseline, baseline_name, version = per_sample_baseline_tf(female, male), "per-sample map_fn", tf.__version__
    else:
        import jax
        baseline, baseline_name = compiled(both_models_baseline(layer)), "both models per sample"
        version = f"{jax.__version__} on {jax.default_backend()}"
    print(f"SMPL layer, {female.num_vertices} vertices ({source}), {os.cpu_count()} CPU cores, "
          f"Keras {keras.__version__} on {BACKEND} {version}")
    print(f"| batch | SMPL layer (samples/s) | {baseline_name} (samples/s) | speed-up |")
    print("|---:|---:|---:|---:|")
    # Both implementations must agree before they are timed.
    rotations, shape = inputs(4, 0)
    difference = np.abs(ops.convert_to_numpy(ours(rotations, shape)[0])
                        - ops.convert_to_numpy(baseline(rotations, shape)[0])).max()
    assert difference < 1e-4, f"the two implementations disagree by {difference} m"
    for batch in args.batches:
        fast, slow = time_rounds([ours, baseline], batch, args.repeats)
        print(f"| {batch} | {fast:,.0f} | {slow:,.0f} | {fast / slow:.1f}x |", flush=True)

    whole = compiled(lambda r, s: layer.forward(r, s).points)
    lean = compiled(lambda r, s: layer.forward(r, s, return_vertices=False).points)
    difference = np.abs(ops.convert_to_numpy(whole(rotations, shape))
                        - ops.convert_to_numpy(lean(rotations, shape))).max()
    assert difference < 1e-6, f"the joints-and-landmarks path differs from the whole mesh by {difference} m"
    print("\n| batch | joints + landmarks only (samples/s) | whole mesh, then points (samples/s) | speed-up |")
    print("|---:|---:|---:|---:|")
    for batch in args.batches:
        fast, slow = time_rounds([lambda r, s: (lean(r, s),), lambda r, s: (whole(r, s),)], batch, args.repeats)
        print(f"| {batch} | {fast:,.0f} | {slow:,.0f} | {fast / slow:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
