#!/usr/bin/env python
"""The SHN's errors on new synthetic frames: an error bank for the SMPLR stages' input noise.

    python tools/shn_error_bank.py GPU_ID CHECKPOINT --out bank.npz [--frames N] [--seconds S]
        [--seed S] [--garments tight|loose] [--cameras cloth3d|varied] [--batch-size 64] [--workers W]
        [--tmp DIR] [--flip-test]

Runs the SHN of CHECKPOINT (a name under TMP/checkpoints, or ``pretrained``)
with ``training=False`` on frames of the synthetic stream
(``DataReader.stream``, no augmentation, a seed of its own so none is an
evaluation frame) and writes ``--out`` (.npz, float16: 0.06 mm steps at 10 cm,
half the size; metres, root-relative world axes like every point the SMPLR
stages read):

- ``errors`` (N, 41, 3): predicted minus true points;
- ``points`` (N, 41, 3): the true points;
- plus ``checkpoint``, ``seed``, ``garments``, ``cameras``, ``flip_test``.

``python -m training dae ... --error-bank bank.npz`` then trains on the
ground-truth points plus these errors instead of the SPEC noise
(``DataReader.augment.add_bank_noise``). It stops after ``--frames`` frames or
``--seconds`` seconds, whichever comes first, and writes what it has; an
existing ``--out`` is not replaced.
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.evaluate import FLIP_TEST_HELP  # noqa: E402  (after the path line; imports no backend)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("gpu_id", metavar="GPU_ID")
    parser.add_argument("checkpoint", metavar="CHECKPOINT")
    parser.add_argument("--out", required=True, help="the .npz to write (not replaced if it exists)")
    parser.add_argument("--frames", type=int, default=20000)
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long (default: no limit)")
    parser.add_argument("--seed", type=int, default=777)
    parser.add_argument("--garments", default="tight", help="tight (the demo's look) or loose")
    parser.add_argument("--cameras", default="cloth3d", help="cloth3d (the demo's) or varied")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=None, help="stream worker processes (default: cores - 1)")
    parser.add_argument("--tmp", default="tmp")
    parser.add_argument("--flip-test", action="store_true", help=FLIP_TEST_HELP)
    args = parser.parse_args(argv)

    from training import TrainingError

    out = Path(args.out)
    if out.suffix != ".npz":
        raise TrainingError(f"--out must end in .npz, got {out}")
    if out.exists():
        raise TrainingError(f"{out} exists; remove it or give another --out")
    if args.frames < 1:
        raise TrainingError(f"--frames must be >= 1, got {args.frames}")
    if not out.parent.is_dir():
        raise TrainingError(f"the folder of --out does not exist: {out.parent}")

    from training.device import select_device

    select_device(args.gpu_id)
    import numpy as np
    from keras import ops
    from tqdm import tqdm

    from DataReader.stream import SyntheticStream
    from models.flip import shn_points
    from training.evaluate import load_shn
    from training.steps import make_steps

    shn, _ = load_shn(args.tmp, args.checkpoint, purpose="run")
    steps = make_steps([shn], None, lambda batch, training: {"points": shn_points(
        shn, batch["image"], batch["root_camera"], args.flip_test, training=training)})
    errors, points = [], []
    started = time.time()
    with SyntheticStream(args.batch_size, seed=args.seed, workers=args.workers, augmentation=0,
                         garments=args.garments, cameras=args.cameras) as stream, \
            tqdm(total=args.frames, desc="error bank", unit="frame", file=sys.stdout) as bar:
        for batch in stream:
            predicted = np.asarray(ops.convert_to_numpy(steps.evaluate(batch)["points"]), np.float32)
            truth = np.asarray(batch["points"], np.float32)
            errors.append(predicted - truth)
            points.append(truth.copy())
            bar.update(len(truth))
            if sum(len(e) for e in errors) >= args.frames:
                break
            if args.seconds is not None and time.time() - started > args.seconds:
                break
    errors = np.concatenate(errors)[:args.frames]
    points = np.concatenate(points)[:args.frames]
    partial = out.with_name(out.stem + ".partial.npz")
    np.savez(partial, errors=errors.astype(np.float16), points=points.astype(np.float16),
             checkpoint=args.checkpoint, seed=args.seed,
             garments=args.garments, cameras=args.cameras, flip_test=args.flip_test)
    partial.rename(out)
    mean_mm = 1000.0 * np.linalg.norm(errors, axis=-1).mean()
    print(f"{len(errors)} frames in {time.time() - started:.0f} s, SHN error {mean_mm:.1f} mm; wrote {out}")


if __name__ == "__main__":
    from training.cli import run_reporting_user_errors

    sys.exit(run_reporting_user_errors(main))
