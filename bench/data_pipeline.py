"""Speed of the SHN input pipeline: crops per second with augmentation 1.

Compares `DataReader.shn_dataset` with a baseline that does per frame what the
original TF1 reader did: reload `info.mat` and `info_body.mat`, decode the
PNG, convert the whole frame to float, cut the crop into a zero-padded float
buffer and resize image and mask separately, then standardise and rotate the
image in the graph. Both run through tf.data on this machine's cores.

    python bench/data_pipeline.py [--frames-root ../shared/cloth3d] [--crops 600]

Prints a table; rounds alternate between the two pipelines so that other
load on the machine hits both alike.
"""
import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import scipy.io  # noqa: E402
import tensorflow as tf  # noqa: E402

import DataReader  # noqa: E402
from DataReader import camera  # noqa: E402
from DataReader.cloth3d import parse_line, read_list  # noqa: E402

BATCH_SIZE = 6  # the SHN's batch size (SPEC)


def original_style_dataset(frames_root, list_file, batch_size, seed):
    """The baseline: the original reader's per-frame work, through tf.data."""
    lines = read_list(list_file)
    frames_root = Path(frames_root)

    def load(line):
        line = line.decode()
        sequence, frame = parse_line(line)
        folder = frames_root / sequence
        info = scipy.io.loadmat(str(folder / "info.mat"))          # re-read for every frame
        body = scipy.io.loadmat(str(folder / "info_body.mat"))
        rotations = body["rotations"][frame].copy()
        points = np.concatenate([body["joints"][frame], body["lmarks"][frame]])
        z_rot = camera.z_rotation(info["zrot"].item())
        points = (points[1:] - points[0]) @ z_rot.T
        rotations[0] = z_rot @ rotations[0]
        shape = np.concatenate([info["shape"].ravel(), [2 * (info["gender"].item() - 0.5)]])
        rgba = cv2.imread(str(frames_root / line), cv2.IMREAD_UNCHANGED)
        mask = (rgba[:, :, 3:4] / 255.0).astype(np.float32)
        image = cv2.cvtColor(rgba, cv2.COLOR_BGRA2RGBA).astype(np.float32)[:, :, :3]
        assert mask.sum() > 0 and not np.isnan(image).any() and not np.isnan(mask).any()
        root = camera.world_to_camera(z_rot @ info["trans"][:, frame], info["camLoc"].ravel())
        centre = camera.project(root)
        half = camera.crop_side_px(root[2]) / 2
        left, top = int(centre[0] - half), int(centre[1] - half)
        side = int(2 * half)
        crops = []
        for channels in (image, np.repeat(mask, 3, axis=2)):
            padded = np.zeros((side, side, 3), np.float32)
            y0, x0 = max(top, 0), max(left, 0)
            y1, x1 = min(top + side, rgba.shape[0]), min(left + side, rgba.shape[1])
            padded[y0 - top:y1 - top, x0 - left:x1 - left] = channels[y0:y1, x0:x1]
            crops.append(cv2.resize(padded, (256, 256)))
        return (crops[0], crops[1][:, :, :1].copy(), points.astype(np.float32),
                rotations.astype(np.float32), shape.astype(np.float32))

    def parse(line):
        image, mask, points, rotations, shape = tf.numpy_function(
            load, [line], [tf.float32] * 5)
        image = tf.image.per_image_standardization(tf.ensure_shape(image, (256, 256, 3)))
        return image, mask, points, rotations, shape

    def rotate(image, mask, points, rotations, shape):
        angle = tf.random.uniform([], -0.15, 0.15)
        apply = tf.random.uniform([]) < 0.25
        angle = tf.where(apply, angle, 0.0)
        c, s = tf.cos(angle), tf.sin(angle)
        cx = 127.5
        transform = tf.stack([c, s, cx - c * cx - s * cx, -s, c, cx + s * cx - c * cx, 0.0, 0.0])
        image = tf.raw_ops.ImageProjectiveTransformV3(
            images=image[None], transforms=transform[None], output_shape=[256, 256],
            fill_value=0.0, interpolation="BILINEAR", fill_mode="CONSTANT")[0]
        rotation = tf.reshape(tf.stack([1.0, 0, 0, 0, c, s, 0, -s, c]), (3, 3))
        points = tf.matmul(points, rotation, transpose_b=True)
        return image, mask, points, rotations, shape

    dataset = tf.data.Dataset.from_tensor_slices(lines).shuffle(len(lines), seed=seed)
    dataset = dataset.map(parse, num_parallel_calls=8).map(rotate, num_parallel_calls=8)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def crops_per_second(dataset, crops):
    """(crops per second, CPU milliseconds per crop) over `crops` crops after
    one warm-up batch. CPU time counts every thread of this process, so it is
    less sensitive than wall time to other load on the machine."""
    iterator = iter(dataset.repeat())
    next(iterator)
    start, cpu_start, count = time.perf_counter(), time.process_time(), 0
    while count < crops:
        batch = next(iterator)
        count += int((batch["image"] if isinstance(batch, dict) else batch[0]).shape[0])
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    del iterator
    return count / wall, 1000.0 * cpu / count


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_root = Path(__file__).resolve().parents[2] / "shared" / "cloth3d"
    parser.add_argument("--frames-root", default=str(default_root))
    parser.add_argument("--list", default=None, help="data list (default: FRAMES_ROOT/train.txt)")
    parser.add_argument("--crops", type=int, default=600, help="crops timed per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    list_file = args.list or str(Path(args.frames_root) / "train.txt")

    pipelines = {
        "baseline: original (.mat per frame, float crop)": lambda: original_style_dataset(
            args.frames_root, list_file, BATCH_SIZE, seed=0),
        "DataReader.shn_dataset, augmentation 1": lambda: DataReader.shn_dataset(
            args.frames_root, list_file, BATCH_SIZE, training=True, augmentation=1, seed=0),
    }
    datasets = {name: make() for name, make in pipelines.items()}
    rates = {name: [] for name in pipelines}
    cpu_ms = {name: [] for name in pipelines}
    for _ in range(args.rounds):
        for name, dataset in datasets.items():
            rate, cpu = crops_per_second(dataset, args.crops)
            rates[name].append(rate)
            cpu_ms[name].append(cpu)

    print(f"SHN input pipeline, batch {BATCH_SIZE}, {os.cpu_count()} CPU cores, "
          f"{args.crops} crops x {args.rounds} rounds ({args.frames_root})")
    print(f"| {'pipeline':<48} | crops/s (median) | min..max | CPU ms/crop | vs baseline |")
    print(f"|{'-' * 50}|------------------|----------|-------------|-------------|")
    baseline = float(np.median(next(iter(rates.values()))))
    for name, values in rates.items():
        median = float(np.median(values))
        print(f"| {name:<48} | {median:16.1f} | {min(values):4.0f}..{max(values):<4.0f}| "
              f"{np.median(cpu_ms[name]):11.1f} | {median / baseline:10.2f}x |")


if __name__ == "__main__":
    main()
