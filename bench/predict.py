"""Images per second of ``predict.py`` on a folder of images, and where the time goes.

    python bench/predict.py GPU_ID [--images 32] [--batch-sizes 1,8] [--checkpoints SHN DAE SMPLR --tmp DIR]
    KERAS_BACKEND=jax python bench/predict.py -1

The folder: ``--images`` synthetic frames (``DataReader.synthesize``, 8 per
sequence) copied without their info.mat, so each crop comes from the alpha
channel as for a user's cut-out. The chain: the given checkpoints, else the
shipped ``pretrained`` weights when present, else freshly initialised
checkpoints of the SPEC sizes (``--num-stacks 5 --num-features 256``; the
speed is the same as trained ones'). For each batch size, one warm-up call
compiles the step, then ``training.predict.predict`` runs over the whole
folder, writing every output file. Prints a table: images/s, and
milliseconds per image reading and cropping, in the network, and writing
the .obj / .npz / .json / overlay.
"""
import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def image_folder(root, count):
    """``count`` synthetic frames in ``root/images`` (no info.mat beside them)."""
    from DataReader.synthesize import synthesize

    sequences = -(-count // 8)
    lists = synthesize(root / "frames", num_sequences=sequences, num_frames=8, seed=0, progress=False)
    folder = root / "images"
    folder.mkdir()
    for line in (lists["train"] + lists["val"])[:count]:
        shutil.copy(root / "frames" / line, folder / line.replace("/", "_"))
    return folder


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("gpu_id", metavar="GPU_ID")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--batch-sizes", default="1,8", help="comma-separated batch sizes")
    parser.add_argument("--checkpoints", nargs=3, metavar=("SHN", "DAE", "SMPLR"), default=None)
    parser.add_argument("--tmp", default="tmp", help="root of checkpoints/ for --checkpoints")
    parser.add_argument("--num-stacks", type=int, default=5)
    parser.add_argument("--num-features", type=int, default=256)
    args = parser.parse_args(argv)

    from training.device import select_device

    device = select_device(args.gpu_id)
    import keras

    from training.evaluate import PRETRAINED, PRETRAINED_ROOT
    from training.predict import Predictor, predict, save_untrained_checkpoints

    with tempfile.TemporaryDirectory(prefix="bench_predict_") as scratch:
        scratch = Path(scratch)
        folder = image_folder(scratch, args.images)
        if args.checkpoints:
            tmp, names, chain = Path(args.tmp), args.checkpoints, " ".join(args.checkpoints)
        elif (PRETRAINED_ROOT / "checkpoints" / "shn" / "best" / "state.json").is_file():
            tmp, names, chain = scratch, [PRETRAINED] * 3, "pretrained"
        else:
            tmp, names = scratch / "tmp", ["shn", "dae", "smplr"]
            save_untrained_checkpoints(tmp, names, args.num_stacks, args.num_features)
            chain = f"untrained, SHN {args.num_stacks} stacks x {args.num_features} features"
        rows = []
        for batch_size in (int(b) for b in args.batch_sizes.split(",") if b):
            predictor = Predictor(tmp, *names, batch_size=batch_size)
            started = time.perf_counter()
            predictor(predictor_inputs(folder, batch_size))
            compile_s = time.perf_counter() - started
            summary = predict(predictor, [folder], scratch / f"out_{batch_size}", progress=False)
            if summary["failed"]:
                raise SystemExit(f"bench: {len(summary['failed'])} images failed: {summary['failed'][0][1]}")
            per_image = {key: 1000 * value / len(summary["written"]) for key, value in summary["seconds"].items()}
            rows.append((batch_size, summary["images_per_second"], per_image, compile_s))

    print(f"\nKeras {keras.__version__}, backend {keras.backend.backend()}, {device}, {os.cpu_count()} CPU cores; "
          f"{args.images} images (640x480 PNG, alpha crop); chain: {chain}")
    print(f"{'batch':>5s} {'images/s':>9s} {'read+crop ms':>13s} {'network ms':>11s} {'write ms':>9s} "
          f"{'first call s':>13s}")
    for batch_size, rate, ms, compile_s in rows:
        print(f"{batch_size:5d} {rate:9.2f} {ms['read_and_crop']:13.1f} {ms['network']:11.1f} {ms['write']:9.1f} "
              f"{compile_s:13.1f}")


def predictor_inputs(folder, batch_size):
    """A batch of standardised crops of the folder's first image (the warm-up call)."""
    import numpy as np

    from training.predict import find_crop, list_images, network_input, read_image

    path = list_images([folder])[0][0]
    rgba, has_alpha = read_image(path)
    return np.stack([network_input(rgba, find_crop(path, rgba, has_alpha))] * batch_size)


if __name__ == "__main__":
    main()
