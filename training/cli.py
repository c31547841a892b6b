"""``python -m training KIND GPU_ID [options]``: train one stage.

The GPU is chosen (``training.device``) before TensorFlow is imported; the
stage loop modules, which import TensorFlow, are imported only afterwards.
"""
import argparse
import re
import sys
import time

from training import STAGE_KINDS, TrainingError
from typing import Any, Callable, Optional, Sequence, Tuple

from training.config import CONCERN_TITLES, StageConfig, command_line_options, resolve_paths, stage_config

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


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m training``: the stage, GPU_ID, and one option per setting
    that ``training.config`` marks as a command-line option, grouped by concern."""
    parser = argparse.ArgumentParser(prog="python -m training", description=DESCRIPTION, epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=STAGE_KINDS, help="stage to train")
    parser.add_argument("gpu_id", metavar="GPU_ID",
                        help="GPU index as nvidia-smi lists it; -1 runs on the CPU; a comma-separated list "
                             "(0,1,2,3) trains data-parallel over those GPUs: --batch-size is the global batch, "
                             "split evenly; batch-norm statistics over the global batch (JAX: DataParallel, "
                             "TensorFlow: MirroredStrategy with synchronized batch norm); README, "
                             "'Data-parallel training'")
    groups = {concern: parser.add_argument_group(title) for concern, title in CONCERN_TITLES.items()}
    for concern, key, flag, help_text, options in command_line_options():
        groups[concern].add_argument(flag, dest=key, default=None, help=help_text, **options)
    return parser


def config_from_args(args: argparse.Namespace) -> StageConfig:
    """A resolved StageConfig from parsed arguments (options not given are None: the stage's defaults)."""
    settings = {key: getattr(args, key) for _, key, _, _, _ in command_line_options()}
    return resolve_paths(stage_config(args.kind, **settings))


def user_errors() -> Tuple[type, ...]:
    """Exception types whose message is shown as one line (no traceback)."""
    from DataReader import CLOTH3DError

    return (TrainingError, FileNotFoundError, FileExistsError, CLOTH3DError)


#: The data reader's own line inside a TensorFlow error (see `user_error_message`).
_WRAPPED_DATA_ERROR = re.compile(r"(?:CLOTH3DError|EmptyMaskError|FileNotFoundError): ([^\n]+)")


def user_error_message(error: BaseException) -> Optional[str]:
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


def report_user_error(error: BaseException) -> int:
    """Print a user-facing error as one ``error: ...`` line and return exit status 2;
    re-raise anything else (a bug keeps its traceback)."""
    message = user_error_message(error)
    if message is None:
        raise error
    print(f"error: {message}", file=sys.stderr)
    return 2


def run_reporting_user_errors(main: Callable[[Optional[Sequence[str]]], Any],
                              argv: Optional[Sequence[str]] = None) -> int:
    """Run a command's ``main(argv)``: user errors (a missing checkpoint, a bad data list)
    print one ``error:`` line and give exit status 2; bugs keep their traceback."""
    try:
        main(argv)
    except Exception as error:  # noqa: BLE001 - report_user_error re-raises bugs
        return report_user_error(error)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.time()
    try:
        config = config_from_args(args)
        from training.device import select_device

        device = select_device(args.gpu_id, mixed_precision=config.model.mixed_precision,
                               verbose=config.run.verbose, data_parallel_batch=config.schedule.batch_size)
        print(f"stage {config.kind} as {config.run.name!r} on {device}; data {config.data.root}")
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
