"""Speed of `DataReader.stream.SyntheticStream`: new training frames per second.

    python bench/synthetic_stream.py [--workers 1,2,4,8,15] [--batch-size 64] [--seconds 20]
        [--antialias 1] [--garments loose] [--consumer-fps 860] [--pool-size 4096]

Prints three tables:
1. One process, no workers: milliseconds per new frame, split into pose
   (drawing a sequence: motion, skinning, placement, outfit), scene
   (normals, loose cloth, skirt, shading), raster (rendering the crop) and
   augment (augmentation, crop warp, standardisation), and frames/s of one core.
2. Throughput against the number of worker processes: frames/s taken by a
   consumer that does nothing else, and what each batch costs the consumer
   (waiting for workers; handing out views of shared memory), next to what
   copying the batch out, or pickling it through a pipe, would cost it.
3. Reuse (`pool_size`): a consumer that takes --consumer-fps frames/s (a
   training step simulated by sleeping), the fraction of new frames served.

NumPy / OpenCV only: runs where TensorFlow is not installed (the GPU machine).
"""
import argparse
import os
import pickle
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")  # table 1 measures one core, as the workers run

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from DataReader.stream import SyntheticStream  # noqa: E402


def cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def one_core(args):
    """Table 1: the work per new frame in this process."""
    cv2.setNumThreads(1)
    with SyntheticStream(args.batch_size, seed=1, workers=0, antialias=args.antialias, garments=args.garments,
                         frames_per_sequence=args.frames_per_sequence) as stream:
        stream.next_batch()  # warm-up (model loading, caches)
        stream._maker.timings = dict.fromkeys(stream._maker.timings, 0.0)
        stream._maker.frames = 0
        started = time.perf_counter()
        batches = 0
        while time.perf_counter() - started < args.seconds / 2 or batches < 2:
            stream.next_batch()
            batches += 1
        elapsed = time.perf_counter() - started
        stats = stream.stats()
    per_frame = stats["per_frame_ms"]
    frames = batches * args.batch_size
    print(f"\n1. One process (workers=0), {frames} frames, batch {args.batch_size}, antialias {args.antialias}, "
          f"garments {args.garments}, {args.frames_per_sequence} frames per sequence")
    print("| pose ms | scene ms | raster ms | augment ms | total ms per frame | frames/s (1 core) |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    total = 1000.0 * elapsed / frames
    print(f"| {per_frame['pose']:.1f} | {per_frame['scene']:.1f} | {per_frame['raster']:.1f} | "
          f"{per_frame['augment']:.1f} | {total:.1f} | {frames / elapsed:.1f} |")


def throughput(args, workers, pool_size=0, consumer_fps=None):
    """Frames/s and per-batch consumer costs with `workers` processes."""
    with SyntheticStream(args.batch_size, seed=2, workers=workers, antialias=args.antialias,
                         garments=args.garments, frames_per_sequence=args.frames_per_sequence,
                         pool_size=pool_size) as stream:
        stream.next_batch()  # start-up: spawning, imports, model loading
        for _ in range(workers):  # the workers' first batches arrive together; let them
            stream.next_batch()
        before = stream.stats()
        step = args.batch_size / consumer_fps if consumer_fps else 0.0
        started = time.perf_counter()
        batches = 0
        while time.perf_counter() - started < args.seconds or batches < 3:
            batch = stream.next_batch()
            if step:
                time.sleep(step)
            batches += 1
        elapsed = time.perf_counter() - started
        after = stream.stats()
        copied = time.perf_counter()
        {key: value.copy() for key, value in batch.items()}  # noqa: B018 - what copy=True costs
        copied = time.perf_counter() - copied
        pickled = time.perf_counter()
        pickle.loads(pickle.dumps(dict(batch), protocol=pickle.HIGHEST_PROTOCOL))  # what a pipe would cost
        pickled = time.perf_counter() - pickled
        del batch
    frames = after["frames"] - before["frames"]
    return {"workers": workers, "frames_per_s": frames / elapsed, "per_core": frames / elapsed / max(workers, 1),
            "wait_ms": 1000 * (after["wait_s"] - before["wait_s"]) / batches,
            "handout_ms": 1000 * (after["handout_s"] - before["handout_s"]) / batches, "copy_ms": 1000 * copied,
            "pickle_ms": 1000 * pickled,
            "fresh": (after["fresh"] - before["fresh"]) / frames, "per_frame_ms": after["per_frame_ms"]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default=None,
                        help="comma-separated worker counts (default: 1, 2, 4, ... up to cores - 1)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--frames-per-sequence", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring time per row")
    parser.add_argument("--antialias", type=int, default=1,
                        help="samples per side in silhouette pixels (1: none, the stream's default)")
    parser.add_argument("--garments", default="loose", choices=("loose", "tight"))
    parser.add_argument("--consumer-fps", type=float, default=860.0,
                        help="table 3: frames/s the simulated training step takes (0: skip table 3)")
    parser.add_argument("--pool-size", type=int, default=4096, help="table 3: frames kept for reuse")
    parser.add_argument("--skip-one-core", action="store_true")
    args = parser.parse_args(argv)
    available = cores()
    if args.workers:
        counts = [int(w) for w in args.workers.split(",")]
    else:
        counts = sorted({w for w in (1, 2, 4, 8, available - 1) if 1 <= w <= max(available - 1, 1)})
    print(f"{available} cores; numpy {np.__version__}")
    if not args.skip_one_core:
        one_core(args)

    print(f"\n2. Workers (batch {args.batch_size}, {args.seconds:g} s per row, consumer does nothing else)")
    print("| workers | frames/s | frames/s per worker | pose+scene+raster+augment ms per frame (in workers) "
          "| consumer: wait ms/batch | hand-out ms/batch | a copy would cost ms | a pickle round trip ms |")
    print("| ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |")
    for workers in counts:
        row = throughput(args, workers)
        parts = row["per_frame_ms"]
        print(f"| {workers} | {row['frames_per_s']:.0f} | {row['per_core']:.1f} | "
              f"{parts['pose']:.1f} + {parts['scene']:.1f} + {parts['raster']:.1f} + {parts['augment']:.1f} | "
              f"{row['wait_ms']:.1f} | {row['handout_ms']:.2f} | {row['copy_ms']:.1f} | {row['pickle_ms']:.1f} |",
              flush=True)

    if args.consumer_fps:
        workers = counts[-1]
        print(f"\n3. Reuse: consumer taking {args.consumer_fps:g} frames/s, {workers} workers, "
              f"pool_size {args.pool_size}")
        print("| pool_size | frames/s served | fraction of new frames | consumer wait ms/batch |")
        print("| ---: | ---: | ---: | ---: |")
        for pool_size in (0, args.pool_size):
            row = throughput(args, workers, pool_size=pool_size, consumer_fps=args.consumer_fps)
            print(f"| {pool_size} | {row['frames_per_s']:.0f} | {row['fresh']:.2f} | {row['wait_ms']:.1f} |",
                  flush=True)


if __name__ == "__main__":
    main()
