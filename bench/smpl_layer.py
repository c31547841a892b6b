"""Samples per second of the SMPL layer against a per-sample baseline.

By default both run on a random model with the official SMPL's sizes (6890
vertices, 207 pose blend shapes), so the work matches official SMPL files;
`--body found` uses the files `smpl.find_models` finds instead (the open
body has no pose blend shapes, which the vectorised layer skips).

The baseline is written in the style of the original release: `tf.map_fn`
over the batch, one sample at a time, with the gender chosen per sample, the
kinematic chain built joint by joint and a 4x4 skinning matrix per vertex. Both run inside `tf.function` on the
same model.

    python bench/smpl_layer.py [--batches 1 32 256] [--repeats 5] [--body smpl-sized|found]
"""
import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import smpl  # noqa: E402
from smpl.kinematics import SMPL_PARENTS  # noqa: E402


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


def per_sample_baseline(female, male):
    """(rotations, shape) -> vertices, joints in the style of the original release:
    shaped templates of both genders for the batch, then `tf.map_fn` over the
    samples, each picking its gender, chaining 4x4 transforms joint by joint
    and skinning every vertex with its own blended 4x4 matrix."""
    stack = lambda name: tf.constant(np.stack([getattr(female, name), getattr(male, name)]), tf.float32)
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


def samples_per_second(fn, batch, repeats):
    rng = np.random.default_rng(batch)
    rotations = tf.constant(smpl.rodrigues(rng.normal(0, 0.3, (batch, 24, 3)).astype(np.float32)))
    shape = tf.constant(np.c_[rng.normal(size=(batch, 10)), np.sign(rng.normal(size=batch))], tf.float32)
    fn(rotations, shape)  # trace
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn(rotations, shape)
    _ = out[0].numpy()
    return batch * repeats / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32, 256])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--body", choices=["smpl-sized", "found"], default="smpl-sized")
    args = parser.parse_args()
    female, male, source = load_models(args.body)
    layer = smpl.SMPL(female, male, check_inputs=False)
    ours = tf.function(lambda r, s: layer(r, s))
    baseline = per_sample_baseline(female, male)
    print(f"SMPL layer, {female.num_vertices} vertices ({source}), {os.cpu_count()} CPU cores, "
          f"TensorFlow {tf.__version__}")
    print(f"| batch | vectorised layer (samples/s) | per-sample map_fn (samples/s) | speed-up |")
    print(f"|---:|---:|---:|---:|")
    # Both implementations must agree before they are timed.
    rng = np.random.default_rng(0)
    rotations = smpl.rodrigues(rng.normal(0, 0.3, (4, 24, 3)).astype(np.float32))
    shape = tf.constant(np.c_[rng.normal(size=(4, 10)), [-1, 1, 1, -1]], tf.float32)
    difference = np.abs(ours(rotations, shape)[0].numpy() - baseline(rotations, shape)[0].numpy()).max()
    assert difference < 1e-4, f"the two implementations disagree by {difference} m"
    for batch in args.batches:
        fast = samples_per_second(ours, batch, args.repeats)
        slow = samples_per_second(baseline, batch, max(1, args.repeats // 2))
        print(f"| {batch} | {fast:,.0f} | {slow:,.0f} | {fast / slow:.1f}x |")


if __name__ == "__main__":
    main()
