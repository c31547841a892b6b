"""Data-parallel steps over 2 CPU devices compute what the plain one-device steps compute.

Each check runs in a subprocess under one Keras backend, with the host split
into 2 devices before the backend starts (JAX: ``XLA_FLAGS=--xla_force_host_platform_device_count=2``;
TensorFlow: ``tf.config.set_logical_device_configuration``) and
``SMPLR_DATA_PARALLEL_ON_CPU=1``, so that ``select_device("0,1")`` sets up the
data-parallel engine over those CPU devices. In that process a model is
trained a few steps with the plain steps, then data parallelism is set up
and the same model (same seed) is trained on the same global batches
(``make_steps`` then returns ``JaxDataParallelSteps`` / ``TensorFlowMirroredSteps``).
Compared: the loss of every step and every weight afterwards, batch-norm
moving statistics included, relative to the tensor's largest value or 1e-3,
whichever is larger (a batch-norm beta followed by another batch norm has a
zero gradient and stays at float32 noise, ~1e-7, which differs between any
two summation orders).

The optimiser is plain SGD: Adam's step, lr * m / (sqrt(v) + eps), is about
lr * sign(g) for every element, so on parameters whose true gradient is zero
(a batch-norm beta followed by another batch norm, the biases before a batch
norm) it turns float32 summation-order noise into steps of size lr, which
differ between any two summation orders; SGD keeps them at noise size. The
real stages' Adam runs are compared through the command line in
``test_data_parallel_cli.py``.

Dropout: on JAX the jitted program draws the masks for the global batch
whatever the sharding, so it stays on (DAE 0.2, SHN 0.1) and must match; on
TensorFlow every replica draws a mask for its slice, from the same mirrored
seed state (not the numbers of one draw for the whole batch), so it is off
there.
"""
import json

import pytest

from conftest import requires_jax, run_backend

#: One subprocess: the plain steps, then the data-parallel ones; prints the largest differences as JSON.
SCRIPT = """
import json, sys
import numpy as np
import keras
from keras import ops
backend = keras.backend.backend()
if backend == "tensorflow":  # two logical CPU devices, before the runtime starts
    import tensorflow as tf
    tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0],
                                               [tf.config.LogicalDeviceConfiguration()] * 2)
from models import DAE, SHN, VoxelGrid, VoxelHeatmapLoss, dae_loss, soft_argmax
from training.device import select_device
from training.steps import make_steps, to_host

KIND, BATCH, STEPS = {kind!r}, {batch}, {steps}
dropout = 0.0 if backend == "tensorflow" else None
rng = np.random.default_rng(0)
if KIND == "dae":
    batches = [dict(noisy=(0.3 * rng.normal(size=(BATCH, 123))).astype(np.float32),
                    points=(0.3 * rng.normal(size=(BATCH, 41, 3))).astype(np.float32)) for _ in range(STEPS)]
else:
    batches = [dict(image=rng.uniform(size=(BATCH, 256, 256, 3)).astype(np.float32),
                    points=(0.3 * rng.normal(size=(BATCH, 41, 3))).astype(np.float32)) for _ in range(STEPS)]

def train():
    keras.utils.set_random_seed(0)
    if KIND == "dae":
        model = DAE() if dropout is None else DAE(dropout_rate=dropout)
        model(np.zeros((1, 123), np.float32))  # creates the variables
        def forward(batch, training):
            cleaned = model(batch["noisy"], training=training)
            return dict(loss=dae_loss(cleaned, batch["points"]), mean=ops.mean(cleaned))
    else:
        model = SHN(num_stacks=1, num_features=8, hourglass_depth=1,
                    **({{}} if dropout is None else dict(dropout_rate=dropout)))
        model.build((None, 256, 256, 3))
        loss = VoxelHeatmapLoss(VoxelGrid(), peak_one=True)
        def forward(batch, training):
            logits = model(batch["image"], training=training)
            heatmap, _ = loss(logits, batch["points"])
            coord = ops.mean(ops.abs(soft_argmax(logits[-1]) - batch["points"]))
            return dict(loss=heatmap + coord, coord=coord)
    optimizer = keras.optimizers.SGD(0.05)
    optimizer.build(model.trainable_variables)
    steps = make_steps([model], optimizer, forward)
    values = to_host([steps.train(batch) for batch in batches])
    steps.sync()
    return values, [np.asarray(ops.convert_to_numpy(w)) for w in model.weights], steps

plain, plain_weights, plain_steps = train()
select_device("0,1", data_parallel_batch=BATCH)
parallel, parallel_weights, parallel_steps = train()
print(json.dumps(dict(
    classes=[type(plain_steps).__name__, type(parallel_steps).__name__],
    devices=parallel_steps.num_devices,
    losses=[[p["loss"], q["loss"]] for p, q in zip(plain, parallel)],
    loss=max(abs(p[k] - q[k]) / max(abs(p[k]), 1e-12) for p, q in zip(plain, parallel) for k in p),
    weights=max((float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-3)), w.path)
                for a, b, w in zip(plain_weights, parallel_weights, plain_steps.models[0].weights)))))
"""

BACKENDS = [pytest.param("jax", marks=requires_jax), "tensorflow"]
ENV = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2", "SMPLR_DATA_PARALLEL_ON_CPU": "1"}
PLAIN_CLASS = {"jax": "JaxSteps", "tensorflow": "TensorFlowSteps"}
PARALLEL_CLASS = {"jax": "JaxDataParallelSteps", "tensorflow": "TensorFlowMirroredSteps"}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind, batch, steps", [("dae", 8, 4), ("shn", 2, 2)])
def test_data_parallel_steps_match_one_device(backend, kind, batch, steps):
    # SHN: global batch 2, one image per device, so batch-norm statistics over
    # the global batch (not per device) are what makes the runs agree.
    out = run_backend(backend, SCRIPT.format(kind=kind, batch=batch, steps=steps), env=ENV)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["classes"] == [PLAIN_CLASS[backend], PARALLEL_CLASS[backend]] and result["devices"] == 2
    assert result["loss"] < 1e-4, result
    assert result["weights"][0] < 1e-4, result
