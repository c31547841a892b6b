"""Speed of the TensorFlow-free SHN loader (`DataReader.shn_batches`): crops per second
delivered to the training loop, by worker count and batch size, with augmentation 1.

    python bench/loader.py [--data Data/frames] [--list train.txt] [--workers 0,1,2,N]
                           [--batch-sizes 6,64] [--crops 384] [--augmentation 1]

--workers defaults to 0, 1, 2 and this machine's core count (0: loading in
the calling thread). Without --data and without Data/frames, a synthetic
folder is made first in /tmp/frames_bench (8 sequences of 10 frames). Each
row starts the loader's workers, takes one batch (the "start" column: worker
start-up plus the first batch), then times --crops crops taken as whole
batches from the endless stream, doing nothing else with them: the loader's
own ceiling. With --jax, JAX is started on its default device (the GPU) before
the workers, and every batch is put on that device (`jax.device_put`, waited
for), as a training loop would. On the 16-core GPU machine (no TensorFlow):

    python bench/loader.py --data DIR --workers 0,4,8,16 [--jax]
"""
import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from DataReader.loader import shn_batches  # noqa: E402

SYNTHETIC_ROOT = Path("/tmp/frames_bench")


def cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def frames_root(data):
    """--data, else Data/frames, else a synthetic folder made on first use."""
    if data is not None:
        return Path(data)
    if (REPO_ROOT / "Data" / "frames").is_dir():
        return REPO_ROOT / "Data" / "frames"
    if not (SYNTHETIC_ROOT / "train.txt").is_file():
        print(f"no Data/frames: making a synthetic folder in {SYNTHETIC_ROOT}", flush=True)
        subprocess.run([sys.executable, "-m", "DataReader.synthesize", "--out", str(SYNTHETIC_ROOT),
                        "--sequences", "8", "--frames", "10", "--seed", "0"], cwd=REPO_ROOT, check=True)
    return SYNTHETIC_ROOT


def measure(root, list_file, workers, batch_size, crops, augmentation, consume):
    """(start-up seconds, crops per second) of one loader; `consume(batch)` gets every batch."""
    with shn_batches(root, list_file, batch_size, training=True, augmentation=augmentation, seed=0,
                     workers=workers) as data:
        stream = data.batches()
        start = time.perf_counter()
        consume(next(stream))
        started = time.perf_counter() - start
        num_batches = max(1, -(-crops // batch_size))
        start = time.perf_counter()
        for _ in range(num_batches):
            consume(next(stream))
        return started, num_batches * batch_size / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="frames root (default Data/frames, else a synthetic one)")
    parser.add_argument("--list", default="train.txt", help="data list inside --data")
    parser.add_argument("--workers", default=f"0,1,2,{cores()}", help="comma-separated worker counts")
    parser.add_argument("--batch-sizes", default="6,64", help="comma-separated batch sizes")
    parser.add_argument("--crops", type=int, default=384, help="crops timed per row")
    parser.add_argument("--augmentation", type=int, default=1, choices=(0, 1))
    parser.add_argument("--jax", action="store_true", help="put every batch on JAX's default device")
    args = parser.parse_args()
    consume = lambda batch: None  # noqa: E731
    device = "none"
    if args.jax:
        import jax

        device = str(jax.devices()[0])
        jax.numpy.ones(1).block_until_ready()  # JAX is up on its device before any worker starts

        def consume(batch):
            jax.block_until_ready(jax.device_put({k: v for k, v in batch.items() if k != "path"}))
    root = frames_root(args.data)
    worker_counts = sorted({int(w) for w in args.workers.split(",")})
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]

    print(f"frames: {root / args.list}; {cores()} cores; augmentation {args.augmentation}; "
          f"{args.crops} crops per row; batches to device: {device}")
    print(f"{'workers':>7} {'batch':>5} {'start s':>8} {'crops/s':>8} {'per worker':>10}")
    for batch_size in batch_sizes:
        for workers in worker_counts:
            started, rate = measure(root, root / args.list, workers, batch_size, args.crops, args.augmentation,
                                    consume)
            per_worker = f"{rate / workers:10.0f}" if workers else f"{'-':>10}"
            print(f"{workers:7d} {batch_size:5d} {started:8.2f} {rate:8.0f} {per_worker}", flush=True)


if __name__ == "__main__":
    main()
