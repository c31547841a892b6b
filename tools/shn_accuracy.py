#!/usr/bin/env python
"""SHN accuracy next to the mean-pose baseline (the README's accuracy figures).

    python tools/shn_accuracy.py GPU_ID CHECKPOINT --data DIR [--list val.txt]
        [--baseline-data DIR --baseline-list train.txt] [--tmp DIR] [--batch-size 8] [--flip-test]

CHECKPOINT is a name under TMP/checkpoints, or ``pretrained``. Prints the
all-points / joints / landmarks error in mm of the last stack's soft-argmax
with ``training=False`` over the list, and of the baseline that predicts, for
every frame, the mean of the 41 root-relative points over the baseline list
(default: the same data's train.txt). ``--flip-test``: the SHN's points are
averaged over each crop and its mirror image (``models.flip``, as test.py's).
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.evaluate import FLIP_TEST_HELP  # noqa: E402  (after the path line; imports no backend)


def mean_pose(data, list_name):
    """(41, 3) mean of the ground-truth points over a data list."""
    import DataReader

    arrays = DataReader.SMPLRArrays.from_list(data, data / list_name)
    return arrays.points.reshape(len(arrays), 41, 3).mean(axis=0)


def camera_axis_errors_mm(predicted, target, to_grid_axes):
    """Mean |error| per frame along the camera's image x, image y and depth
    axes, mm: (B, 3) from world-axes points (B, 41, 3) in metres."""
    import numpy as np

    difference = np.asarray(to_grid_axes(np.asarray(predicted, np.float32) - np.asarray(target, np.float32),
                                         "camera"))
    return 1000.0 * np.abs(difference).mean(axis=1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("gpu_id", metavar="GPU_ID")
    parser.add_argument("checkpoint", metavar="CHECKPOINT")
    parser.add_argument("--data", required=True)
    parser.add_argument("--list", default="val.txt")
    parser.add_argument("--baseline-data", default=None)
    parser.add_argument("--baseline-list", default="train.txt")
    parser.add_argument("--tmp", default="tmp")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--flip-test", action="store_true", help=FLIP_TEST_HELP)
    args = parser.parse_args(argv)

    from training.device import select_device

    select_device(args.gpu_id)
    import numpy as np
    from keras import ops

    import DataReader
    from models.flip import shn_points
    from training.evaluate import load_shn
    from models.heatmaps import to_grid_axes
    from training.metrics import group_errors, point_errors_mm, summarize_point_errors
    from training.steps import make_steps

    shn, _ = load_shn(args.tmp, args.checkpoint)
    steps = make_steps([shn], None, lambda batch, training: {"points": shn_points(
        shn, batch["image"], batch["root_camera"], args.flip_test, training=training)})
    data = Path(args.data)
    baseline = mean_pose(Path(args.baseline_data or args.data), args.baseline_list)
    errors, base_errors, axis_errors, base_axis_errors = [], [], [], []
    with DataReader.shn_batches(data, data / args.list, args.batch_size, training=False, workers=0) as batches:
        for batch in batches:
            predicted = np.asarray(ops.convert_to_numpy(steps.evaluate(batch)["points"]))
            guess = np.broadcast_to(baseline, batch["points"].shape)
            errors.append(point_errors_mm(predicted, batch["points"]))
            base_errors.append(point_errors_mm(guess, batch["points"]))
            axis_errors.append(camera_axis_errors_mm(predicted, batch["points"], to_grid_axes))
            base_axis_errors.append(camera_axis_errors_mm(guess, batch["points"], to_grid_axes))
    shn_summary = summarize_point_errors(np.concatenate(errors))
    base_summary = summarize_point_errors(np.concatenate(base_errors))
    frames = sum(len(e) for e in errors)
    flip = ", --flip-test" if args.flip_test else ""
    print(f"{data / args.list}: {frames} frames; SHN {args.checkpoint} (training=False{flip}) vs mean pose of "
          f"{Path(args.baseline_data or args.data) / args.baseline_list}")
    print(f"{'error (mm)':14s} {'joints':>8s} {'landmarks':>10s} {'all':>8s}")
    for label, summary in (("SHN", shn_summary), ("mean pose", base_summary)):
        print(f"{label:14s} {summary['joints']:8.1f} {summary['landmarks']:10.1f} {summary['all']:8.1f}")
    groups = {label: group_errors(np.concatenate(e)) for label, e in (("SHN", errors), ("mean pose", base_errors))}
    print(f"{'joint group':14s} " + " ".join(f"{group:>9s}" for group in groups["SHN"]))
    for label, values in groups.items():
        print(f"{label:14s} " + " ".join(f"{value:9.1f}" for value in values.values()))
    print(f"{'per axis (mm)':14s} {'image x':>9s} {'image y':>9s} {'depth':>9s}"
          "   (mean |error| along the camera's axes)")
    for label, values in (("SHN", axis_errors), ("mean pose", base_axis_errors)):
        print(f"{label:14s} " + " ".join(f"{value:9.1f}" for value in np.concatenate(values).mean(axis=0)))


if __name__ == "__main__":
    from training.cli import run_reporting_user_errors

    sys.exit(run_reporting_user_errors(main))
