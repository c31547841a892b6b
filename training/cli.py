"""``python -m training KIND GPU_ID [options]``: train one stage.

The GPU is chosen (``training.device``) before TensorFlow is imported; the
stage loop modules, which import TensorFlow, are imported only afterwards.
"""
import argparse
import re
import sys
import time

from training import STAGE_KINDS, TrainingError
from training.config import (AUGMENTATION_MODES, DEFAULT_DATA, DEFAULT_NAMES, DEFAULT_TMP, GRID_AXES, HEATMAP_PEAKS,
                             QUICK, RECIPES, SYNTHETIC_BODY_SOURCES, resolve_paths, stage_config)

DESCRIPTION = """\
Train one SMPLR stage with the original's settings (SPEC):
  shn        stacked hourglass, images -> 41 points (Adam, batch 6, 200 epochs,
             <= 500*(epoch+1) steps/epoch, lr(e) = lr0*(1 - 1/(1+exp(10 - e/12.5))) + 1e-4)
  dae        denoising autoencoder on noisy ground-truth points
  shape      shape net (bone lengths -> 10 betas + gender)
  pose       pose net (bone directions -> 24 rotation matrices)
  shapepose  both nets fine-tuned together through SMPL (30 epochs, lr0 1e-4),
             starting from the "shape" and "pose" checkpoints
SMPLR stages: Adam, batch 256, 200 epochs, <= 400 batches/epoch,
lr(e) = lr0*(1 - 1/(1+exp(4 - e/12.5))) + 1e-4.

Checkpoints go to TMP/checkpoints/NAME/{best,latest}, TensorBoard logs to
TMP/logs/NAME (view: .venv/bin/tensorboard --logdir tmp/logs)."""

EXAMPLES = """\
examples:
  python -m training shn 0 --data Data/frames --voc ~/VOC2012
  python -m training dae -1 --quick --name dae_try
  python -m training shapepose 0 --finetune shape pose --name smplr
  python -m training pose 0 --resume            # continue an interrupted run"""


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m training", description=DESCRIPTION, epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=STAGE_KINDS, help="stage to train")
    parser.add_argument("gpu_id", metavar="GPU_ID",
                        help="GPU index as nvidia-smi lists it; -1 runs on the CPU")
    data = parser.add_argument_group("data")
    data.add_argument("--data", metavar="DIR", default=str(DEFAULT_DATA),
                      help="frames root holding the sequences and the data lists (default: %(default)s)")
    data.add_argument("--train-list", metavar="FILE", default="train.txt", help="training list inside --data (default: %(default)s)")
    data.add_argument("--val-list", metavar="FILE", default="val.txt", help="validation list inside --data (default: %(default)s)")
    data.add_argument("--augmentation", metavar="MODE", type=int, default=None,
                      help="SHN: " + ", ".join(f"{k} {v}" for k, v in AUGMENTATION_MODES.items())
                           + " (default: 3 with --voc, else 1). SMPLR stages: 1 adds the SPEC input noise "
                             "to the points (default), 0 trains on clean points")
    data.add_argument("--voc", metavar="DIR", default=None,
                      help="Pascal VOC 2012 folder (JPEGImages, SegmentationObject, person_trainval list) "
                           "for SHN background/occlusion augmentation (modes 2 and 3)")
    data.add_argument("--synthetic", metavar="N", type=int, default=None,
                      help="SMPLR stages: add N random bodies to the training points (default 0)")
    data.add_argument("--synthetic-bodies", metavar="SOURCE", default=None, choices=tuple(SYNTHETIC_BODY_SOURCES),
                      help="where --synthetic bodies come from: " + "; ".join(
                          f"{k}: {v}" for k, v in SYNTHETIC_BODY_SOURCES.items()) + " (default: auto)")
    data.add_argument("--smpl-dir", metavar="DIR", default=None,
                      help="folder with the official SMPL model files (default: smpl/models, "
                           "$SMPLR_SMPL_DIR, else the open default body)")
    run = parser.add_argument_group("run")
    run.add_argument("--name", metavar="NAME", default=None,
                     help="checkpoint/log name (default: " + ", ".join(f"{k} -> {v}" for k, v in DEFAULT_NAMES.items())
                          + ")")
    run.add_argument("--lr", metavar="LR", type=float, default=None,
                     help="initial learning rate lr0 of the schedule (default 0.01; shapepose 1e-4)")
    run.add_argument("--lr-width", metavar="EPOCHS", type=float, default=None,
                     help="width of the learning-rate sigmoid in epochs (SPEC 12.5: the rate halves at "
                          "epoch 12.5*10 for the SHN, 12.5*4 for SMPLR); e.g. 12.5*E/200 fits the whole "
                          "SPEC curve into E epochs")
    run.add_argument("--epochs", metavar="N", type=int, default=None, help="epochs (default 200; shapepose 30)")
    run.add_argument("--steps", metavar="N", type=int, default=None,
                     help="exactly N training steps per epoch, repeating the list when it is short "
                          "(default, as the original: SHN min(500*(epoch+1), batches in the list), "
                          "SMPLR min(400, batches in the list))")
    run.add_argument("--val-steps", metavar="N", type=int, default=None,
                     help="at most this many validation batches (default: the whole list)")
    run.add_argument("--batch-size", metavar="N", type=int, default=None, help="batch size (default: SHN 6, SMPLR 256)")
    run.add_argument("--seed", metavar="N", type=int, default=0,
                     help="seed of Python, NumPy, TensorFlow and the input pipeline (default: %(default)s)")
    run.add_argument("--finetune", nargs="+", metavar="NAME", default=None,
                     help="start from these checkpoints (best slot): one name of the same kind; for "
                          "shapepose SHAPE POSE (default: shape pose) or one shapepose name")
    run.add_argument("--resume", action="store_true",
                     help="continue NAME from its latest checkpoint (epoch, optimiser, best score)")
    run.add_argument("--overwrite", action="store_true",
                     help="replace an existing checkpoint NAME (and its logs) instead of stopping")
    run.add_argument("--tmp", metavar="DIR", default=str(DEFAULT_TMP),
                     help="root of checkpoints/, logs/ and results/ (default: %(default)s)")
    run.add_argument("--quick", action="store_true",
                     help="few epochs and steps, same networks and code (for trying things out; "
                          "per stage: " + "; ".join(f"{k} " + ", ".join(f"{n}={v:g}" for n, v in q.items())
                                                    for k, q in QUICK.items()) + ")")
    model = parser.add_argument_group("model and device")
    model.add_argument("--mixed-precision", action="store_true",
                       help="SHN on GPU: float16 compute with loss scaling (TensorFlow) or bfloat16 (JAX); heatmap read-out and loss "
                            "stay float32")
    model.add_argument("--dae-dropout", metavar="RATE", type=float, default=None,
                       help="DAE dropout rate on its input and middle layer (default 0.2 = the SPEC's keep "
                            "0.8; 0 lets the DAE see every coordinate, which denoises much better on "
                            "small data)")
    model.add_argument("--verbose", action="store_true",
                       help="show TensorFlow's start-up log lines (oneDNN, CUDA stubs; hidden by default)")
    model.add_argument("--num-stacks", metavar="N", type=int, default=None, help="SHN stacks (default 5, as SPEC)")
    model.add_argument("--num-features", metavar="N", type=int, default=None, help="SHN features (default 256, as SPEC)")
    shn = parser.add_argument_group("SHN recipe and diagnostics (see README, 'SHN recipes')")
    shn.add_argument("--recipe", metavar="NAME", default=None, choices=tuple(RECIPES),
                     help="named SHN settings, applied before the options below: spec (default, the original: "
                          "Gaussian-density targets, cross-entropy only, lr 0.01, batch 6), fast (what the "
                          "shipped weights use: " + ", ".join(f"{k}={v}" for k, v in RECIPES["fast"].items())
                          + "; learns in minutes instead of days)")
    shn.add_argument("--heatmap-peak", metavar="KIND", default=None, choices=HEATMAP_PEAKS,
                     help="point heatmap targets: density (SPEC: the Gaussian density, peak 0.0635; the loss "
                          "then falls by pushing every logit down) or one (scaled to a peak of 1, the "
                          "original's commented-out line)")
    shn.add_argument("--coord-loss-weight", metavar="W", type=float, default=None,
                     help="add W x the mean L1 error (metres) of the last stack's soft-argmax points to the "
                          "loss (integral regression, Sun et al. 2018; SPEC 0, fast 1)")
    shn.add_argument("--grid-axes", metavar="AXES", default=None, choices=tuple(GRID_AXES),
                     help="axes of the SHN's 64 x 64 x 16 voxel grid: world (default, SPEC: columns, rows, "
                          "depth slices <- world x, y, z, so the body's vertical lies on the 16 coarse "
                          "depth slices) or camera (columns <- image x = world +y, rows <- image y = world "
                          "-z, depth slices <- the camera axis = world -x; points outside the SHN stay in "
                          "world axes; saved with the checkpoint; no recipe selects it yet, fast keeps world)")
    shn.add_argument("--stream", action="store_true",
                     help="train on an endless stream of new synthetic frames rendered by worker processes "
                          "(DataReader.stream) instead of the training list; validation stays on the val list")
    shn.add_argument("--stream-pool", metavar="N", type=int, default=None,
                     help="with --stream: keep N recent frames and reuse them (with new augmentation) when "
                          "the renderers fall behind the GPU (default 0: every frame new, the GPU may wait)")
    shn.add_argument("--workers", metavar="N", type=int, default=None,
                     help="loader / stream processes on backends without tf.data (JAX) and for --stream "
                          "(default: CPU cores - 1)")
    shn.add_argument("--train-check-batches", metavar="N", type=int, default=None,
                     help="at each validation also score N un-augmented training batches (training=False; "
                          "on JAX also with batch statistics), to see batch-norm or over-fitting gaps")
    shn.add_argument("--bn-recalibrate", metavar="N", type=int, default=None,
                     help="before each validation and checkpoint, re-estimate the batch-norm statistics "
                          "with the current weights on N un-augmented training batches (precise batch norm)")
    run.add_argument("--log-every", metavar="N", type=int, default=None,
                     help="read the training losses to the host every N steps (default 50; one sync each)")
    model.add_argument("--log-images", metavar="N", type=int, default=None,
                       help="SHN: validation crops with skeletons written to TensorBoard (default 4)")
    return parser


def config_from_args(args):
    """A resolved StageConfig from parsed arguments."""
    config = stage_config(
        args.kind, quick=args.quick, name=args.name, lr0=args.lr, lr_width=args.lr_width, epochs=args.epochs,
        steps=args.steps, val_steps=args.val_steps, batch_size=args.batch_size, seed=args.seed,
        finetune=tuple(args.finetune) if args.finetune is not None else None,
        resume=args.resume, overwrite=args.overwrite, tmp=args.tmp, data=args.data,
        train_list=args.train_list, val_list=args.val_list, augmentation=args.augmentation,
        voc=args.voc, smpl_dir=args.smpl_dir, synthetic=args.synthetic,
        synthetic_bodies=args.synthetic_bodies,
        mixed_precision=args.mixed_precision, num_stacks=args.num_stacks, dae_dropout=args.dae_dropout,
        num_features=args.num_features, log_images=args.log_images,
        recipe=args.recipe, heatmap_peak=args.heatmap_peak,
        coord_loss_weight=args.coord_loss_weight, grid_axes=args.grid_axes, stream=args.stream or None,
        workers=args.workers,
        stream_pool=args.stream_pool,
        train_check_batches=args.train_check_batches, bn_recalibrate=args.bn_recalibrate,
        log_every=args.log_every)
    if config.mixed_precision and config.kind != "shn":
        raise TrainingError("--mixed-precision applies to the SHN stage only")
    if config.kind != "shn" and (args.heatmap_peak or args.coord_loss_weight is not None or args.stream
                                 or args.train_check_batches or args.bn_recalibrate or args.grid_axes):
        raise TrainingError("--heatmap-peak, --coord-loss-weight, --grid-axes, --stream, --train-check-batches "
                            "and --bn-recalibrate apply to the shn stage only")
    return resolve_paths(config)


def user_errors():
    """Exception types whose message is shown as one line (no traceback)."""
    from DataReader import CLOTH3DError

    return (TrainingError, FileNotFoundError, FileExistsError, CLOTH3DError)


#: The data reader's own line inside a TensorFlow error (see `user_error_message`).
_WRAPPED_DATA_ERROR = re.compile(r"(?:CLOTH3DError|EmptyMaskError|FileNotFoundError): ([^\n]+)")


def user_error_message(error):
    """The one-line message of a user-facing error, or None for anything else (a bug).

    A bad frame found while tf.data reads it (e.g. a PNG that is corrupt past
    its header) reaches the training loop wrapped in a TensorFlow error that
    carries the reader's traceback; its one line naming the file is extracted.
    """
    if isinstance(error, user_errors()):
        return str(error)
    if type(error).__module__.startswith("tensorflow"):
        match = _WRAPPED_DATA_ERROR.search(str(error))
        if match:
            return match.group(1).strip()
    return None


def report_user_error(error):
    """Print a user-facing error as one ``error: ...`` line and return exit status 2;
    re-raise anything else (a bug keeps its traceback)."""
    message = user_error_message(error)
    if message is None:
        raise error
    print(f"error: {message}", file=sys.stderr)
    return 2


def run_reporting_user_errors(main, argv=None):
    """Run a command's ``main(argv)``: user errors (a missing checkpoint, a bad data list)
    print one ``error:`` line and give exit status 2; bugs keep their traceback."""
    try:
        main(argv)
    except Exception as error:  # noqa: BLE001 - report_user_error re-raises bugs
        return report_user_error(error)
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    started = time.time()
    try:
        config = config_from_args(args)
        from training.device import select_device

        device = select_device(args.gpu_id, mixed_precision=config.mixed_precision, verbose=args.verbose)
        print(f"stage {config.kind} as {config.name!r} on {device}; data {config.data}")
        if config.kind == "shn":
            from training.shn_loop import train
        else:
            from training.smplr_loop import train
        train(config)
    except Exception as error:  # noqa: BLE001 - user errors become one line, bugs keep their traceback
        return report_user_error(error)
    except KeyboardInterrupt:
        print("interrupted; continue with --resume", file=sys.stderr)
        return 130
    print(f"{config.kind} finished in {time.time() - started:.1f} s")
    return 0
