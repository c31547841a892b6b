#!/usr/bin/env python
"""Re-estimate an SHN checkpoint's batch-norm statistics ("precise batch norm").

    python tools/recalibrate_bn.py GPU_ID SRC_ROOT NAME DST_ROOT [--batches N] [--batch-size B]
        [--data DIR --list train.txt | --stream] [--weights-dtype float16]

Loads the SHN of ``SRC_ROOT/checkpoints/NAME/best``, runs it in training mode
(batch statistics) on N batches of frames with its weights fixed, sets every
batch-norm layer's moving mean and variance to the average of those batches'
statistics (``training.steps.Steps.recalibrate_batch_norm``) and writes
``DST_ROOT/checkpoints/NAME/best`` (its state.json notes the recalibration).

Why: the moving averages (momentum 0.9) mix statistics of the weights of the
last few dozen steps; while the learning rate is high those weights move
fast, and ``training=False`` then scored far worse than batch statistics in
the H200 run (README, "Batch norm at inference"). It also repairs statistics
lost in a lossy export.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("gpu_id", metavar="GPU_ID")
    parser.add_argument("src", metavar="SRC_ROOT")
    parser.add_argument("name", metavar="NAME")
    parser.add_argument("dst", metavar="DST_ROOT")
    parser.add_argument("--batches", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--data", default=None, help="frames root (with --list); default: the synthetic stream")
    parser.add_argument("--list", default="train.txt")
    parser.add_argument("--stream", action="store_true", help="frames from DataReader.stream (the default)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--weights-dtype", default=None)
    args = parser.parse_args(argv)

    from training.device import select_device

    select_device(args.gpu_id)
    import numpy as np

    from models import SHN
    from training import TrainingError
    from training.checkpoints import CheckpointStore
    from training.steps import make_steps

    store = CheckpointStore(args.src, args.name)
    state = store.read_state("best")
    if state is None:
        raise TrainingError(f"no best checkpoint {args.name!r} in {Path(args.src) / 'checkpoints'}")
    config = state.get("config", {})
    shn = SHN(num_stacks=int(config.get("num_stacks", 5)), num_features=int(config.get("num_features", 256)),
              grid_axes=config.get("grid_axes", "world"))
    shn(np.zeros((1, 256, 256, 3), np.float32))
    store.restore("best", {"shn": shn})
    steps = make_steps([shn], None, lambda batch, training: {"logits": shn(batch["image"], training=training)})
    if args.data:
        import DataReader

        data = DataReader.shn_batches(Path(args.data), Path(args.data) / args.list, args.batch_size, training=True,
                                      seed=args.seed, workers=args.workers)
        batches = data.batches()
    else:
        from DataReader.stream import SyntheticStream

        data = SyntheticStream(args.batch_size, seed=args.seed, workers=args.workers)
        batches = data.batches()
    try:
        used = steps.recalibrate_batch_norm(batches, args.batches)
    finally:
        data.close()
    source = f"{args.data}/{args.list}" if args.data else f"the synthetic stream (seed {args.seed})"
    state = dict(state, batch_norm_recalibrated={"batches": used, "batch_size": args.batch_size, "frames": source})
    CheckpointStore(args.dst, args.name).save("best", {"shn": shn}, state, weights_dtype=args.weights_dtype)
    print(f"re-estimated batch norm on {used} batches of {args.batch_size} frames from {source}; "
          f"wrote {Path(args.dst) / 'checkpoints' / args.name / 'best'}")


if __name__ == "__main__":
    from training.cli import run_reporting_user_errors

    sys.exit(run_reporting_user_errors(main))
