"""Training throughput of the project's own stage loops, data loading included.

    KERAS_BACKEND=jax python bench/train_step.py GPU_ID --data Data/frames [--shn 6:float32,64:bfloat16]
        [--steps 60] [--stream] [--workers N] [--smplr dae,pose,shapepose]

For each SHN setting (batch:precision) it builds the real ``SHNStage`` and
times ``train_step`` over batches from the stage's own input (the list
loader, or ``--stream``), then the same step on one batch held on the device
("bare": no input pipeline) to show whether the loop is input-bound. SMPLR
stages: samples/s of ``SMPLRStage.train_step`` at batch 256. Prints a table.
Timings start after 5 warm-up steps (compilation) and end on a host read.
"""
import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def timed_steps(stage, batches, steps):
    from training.steps import to_host

    values = None
    for _ in range(5):
        values = stage.train_step(next(batches))
    to_host([values])
    started = time.perf_counter()
    for _ in range(steps):
        values = stage.train_step(next(batches))
    to_host([values])
    return time.perf_counter() - started


def bench_shn(args, batch, precision):
    import keras

    from training.config import resolve_paths, stage_config
    from training.shn_loop import SHNStage
    from training.steps import numeric_inputs

    keras.mixed_precision.set_global_policy("mixed_bfloat16" if precision == "bfloat16" else
                                            "mixed_float16" if precision == "float16" else "float32")
    config = resolve_paths(stage_config("shn", recipe="fast", batch_size=batch, data=args.data,
                                        stream=args.stream or None, workers=args.workers,
                                        mixed_precision=precision != "float32", name="bench"))
    stage = SHNStage(config)
    try:
        batches = stage.train_batches(0)
        loop = timed_steps(stage, batches, args.steps)
        one = {k: keras.ops.convert_to_tensor(v) for k, v in numeric_inputs(next(batches)).items()}
        bare = timed_steps(stage, iter(lambda: one, None), args.steps)
    finally:
        stage.close()
    return args.steps * batch / loop, args.steps * batch / bare


def bench_smplr(args, kind):
    from training.config import resolve_paths, stage_config
    from training.smplr_loop import SMPLRStage

    config = resolve_paths(stage_config(kind, data=args.data, name="bench", finetune=()))
    stage = SMPLRStage(config)
    seconds = timed_steps(stage, stage.train_batches(0), args.steps)
    return args.steps * config.batch_size / seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("gpu_id", metavar="GPU_ID")
    parser.add_argument("--data", default="Data/frames")
    parser.add_argument("--shn", default="6:float32,6:bfloat16,64:float32,64:bfloat16",
                        help="comma-separated batch:precision settings (precision float32, bfloat16, float16)")
    parser.add_argument("--smplr", default="dae,shape,pose,shapepose")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args(argv)

    from training.device import select_device

    device = select_device(args.gpu_id)
    import keras

    rows = []
    for setting in filter(None, args.shn.split(",")):
        batch, precision = setting.split(":")
        loop, bare = bench_shn(args, int(batch), precision)
        rows.append((f"SHN batch {batch} {precision}", loop, bare))
        print(f"{rows[-1][0]}: loop {loop:.0f} images/s, bare step {bare:.0f} images/s", flush=True)
    keras.mixed_precision.set_global_policy("float32")
    for kind in filter(None, args.smplr.split(",")):
        rate = bench_smplr(args, kind)
        rows.append((f"{kind} batch 256", rate, None))
        print(f"{kind}: {rate:.0f} samples/s", flush=True)

    print(f"\nKeras {keras.__version__}, backend {keras.backend.backend()}, {device}, "
          f"{os.cpu_count()} CPU cores, input: {'stream' if args.stream else args.data}")
    print(f"{'setting':28s} {'loop (/s)':>10s} {'bare step (/s)':>15s} {'loop/bare':>10s}")
    for name, loop, bare in rows:
        ratio = f"{loop / bare:.0%}" if bare else "-"
        bare_text = f"{bare:.0f}" if bare else "-"
        print(f"{name:28s} {loop:10.0f} {bare_text:>15s} {ratio:>10s}")


if __name__ == "__main__":
    main()
