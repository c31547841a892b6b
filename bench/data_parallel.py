"""Data-parallel SHN throughput: the plain step, one device through the data-parallel code, N devices.

    python bench/data_parallel.py 0,1,2,3 [--batch 6] [--steps 30] [--mixed-precision]
    KERAS_BACKEND=jax python bench/data_parallel.py 0,1 ...
    SMPLR_DATA_PARALLEL_ON_CPU=1 python bench/data_parallel.py 0,1 --num-stacks 1 --num-features 16 --steps 3

For GPU_IDS ``0,1,2,3`` it measures, each in a process of its own (the
devices must be chosen before the backend starts): ``0`` (the plain step),
``0,`` (GPU 0 through the data-parallel code: ``training.distribute``), then
the first 2, 4, 8 ids and the whole list, each at a fixed global batch
(``--batch``) and at ``--batch`` per device. With
``SMPLR_DATA_PARALLEL_ON_CPU=1`` the ids name logical CPU devices (XLA's host
device count on JAX, the CPU split on TensorFlow) and the plain step runs on
``-1``: a check that the code runs, not a speed figure (the logical devices
share the same cores).

The step is the training one (``training.steps.make_steps``): SHN logits ->
heatmap cross-entropy + soft-argmax L1 (the ``fast`` recipe's loss) -> Adam,
on a synthetic batch held on the host and placed on the devices at every
step as in training (data loading excluded: see bench/train_step.py). Timing
starts after 3 warm-up steps and ends on a host read. Prints images/s, per
device, against the plain step, and the scaling efficiency (images/s over N
x the plain step's) at --batch per device.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


def measure(args):
    """One setting in this process: JSON line with images/s of ``args.worker`` at ``args.batch``."""
    from training.device import select_device

    device = select_device(args.worker, mixed_precision=args.mixed_precision, data_parallel_batch=args.batch)
    import keras
    import numpy as np
    from keras import ops

    from models import SHN, VoxelGrid, VoxelHeatmapLoss, soft_argmax
    from training.steps import make_steps, to_host

    keras.utils.set_random_seed(0)
    model = SHN(num_stacks=args.num_stacks, num_features=args.num_features)
    model.build((None, 256, 256, 3))
    heatmap_loss = VoxelHeatmapLoss(VoxelGrid(), peak_one=True)

    def forward(batch, training):
        logits = model(batch["image"], training=training)
        heatmaps, _ = heatmap_loss(logits, batch["points"])
        return {"loss": heatmaps + ops.mean(ops.abs(soft_argmax(logits[-1]) - batch["points"]))}

    optimizer = keras.optimizers.Adam(1e-3)
    loss_scale = args.mixed_precision and keras.backend.backend() == "tensorflow"
    if loss_scale:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build(model.trainable_variables)
    steps = make_steps([model], optimizer, forward, loss_scale=loss_scale)
    rng = np.random.default_rng(0)
    batch = {"image": rng.uniform(size=(args.batch, 256, 256, 3)).astype(np.float32),
             "points": (0.3 * rng.normal(size=(args.batch, 41, 3))).astype(np.float32)}
    for _ in range(3):
        values = steps.train(batch)
    to_host([values])
    started = time.perf_counter()
    for _ in range(args.steps):
        values = steps.train(batch)
    to_host([values])
    seconds = time.perf_counter() - started
    print(json.dumps({"device": device, "devices": steps.num_devices, "class": type(steps).__name__,
                      "images_per_s": args.steps * args.batch / seconds}))


def settings(gpu_ids, batch):
    """(label, GPU_ID, global batch) of every process to run, plain first."""
    ids = [part for part in gpu_ids.split(",") if part]
    on_cpu = os.environ.get("SMPLR_DATA_PARALLEL_ON_CPU") == "1"
    rows = [("plain step", "-1" if on_cpu else ids[0], batch), ("1 device, data-parallel code", f"{ids[0]},", batch)]
    counts = sorted({n for n in (2, 4, 8) if n < len(ids)} | ({len(ids)} if len(ids) > 1 else set()))
    for n in counts:
        listed = ",".join(ids[:n])
        if batch % n == 0:
            rows.append((f"{n} devices, global batch {batch}", listed, batch))
        rows.append((f"{n} devices, {batch} per device", listed, batch * n))
    return rows


def run_setting(args, gpu_id, batch):
    command = [sys.executable, str(Path(__file__).resolve()), args.gpu_ids, "--worker", gpu_id, "--batch", str(batch),
               "--steps", str(args.steps), "--num-stacks", str(args.num_stacks),
               "--num-features", str(args.num_features)] + (["--mixed-precision"] if args.mixed_precision else [])
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    if result.returncode != 0:
        raise SystemExit(f"GPU_ID {gpu_id} at batch {batch} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("gpu_ids", metavar="GPU_IDS", help="comma-separated GPU ids, e.g. 0,1,2,3")
    parser.add_argument("--batch", type=int, default=6, help="global batch, and batch per device (default 6, SPEC)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per setting (default 30)")
    parser.add_argument("--num-stacks", type=int, default=5)
    parser.add_argument("--num-features", type=int, default=256)
    parser.add_argument("--mixed-precision", action="store_true", help="bfloat16 (JAX) / float16 (TensorFlow)")
    parser.add_argument("--worker", metavar="GPU_ID", help=argparse.SUPPRESS)  # one setting, in a child process
    args = parser.parse_args(argv)
    if args.worker is not None:
        return measure(args)

    from training.device import keras_backend_name

    results = []
    for label, gpu_id, batch in settings(args.gpu_ids, args.batch):
        result = run_setting(args, gpu_id, batch)
        results.append((label, gpu_id, batch, result))
        print(f"{label}: GPU_ID {gpu_id}, batch {batch}: {result['images_per_s']:.1f} images/s "
              f"({result['class']} on {result['device']})", flush=True)
    plain = results[0][3]["images_per_s"]
    print(f"\nSHN {args.num_stacks} stacks x {args.num_features} features, "
          f"{'mixed precision' if args.mixed_precision else 'float32'}, Keras backend {keras_backend_name()}, "
          f"{args.steps} timed steps, synthetic batch on the host (no data loading)")
    print(f"{'setting':34s} {'GPU_ID':>9s} {'batch':>6s} {'images/s':>9s} {'per device':>11s} {'vs plain':>9s} "
          f"{'scaling':>8s}")
    for label, gpu_id, batch, result in results:
        rate, devices = result["images_per_s"], result["devices"]
        scaling = f"{rate / (devices * plain):.0%}" if batch == args.batch * devices and devices > 1 else "-"
        print(f"{label:34s} {gpu_id:>9s} {batch:6d} {rate:9.1f} {rate / devices:11.1f} {rate / plain:9.0%} "
              f"{scaling:>8s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
