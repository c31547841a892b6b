#!/usr/bin/env python
"""Train every stage in order, as the original ``train_all.py``:

    python train_all.py GPU_ID [--data DIR] [--quick] [--synthetic N] [--resume | --overwrite]

SHN -> DAE -> shape -> pose -> shape+pose fine-tune (from the shape and pose
checkpoints), each stage in its own process (``python -m training KIND ...``),
so every stage starts with a clean graph and frees its (GPU) memory. Stops at
the first stage that fails, with the command to rerun. Checkpoints are named
shn, dae, shape, pose and smplr; evaluate them with

    python test.py GPU_ID shn dae smplr
"""
import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence

from training import STAGE_KINDS
from training.cli import report_user_error
from training.config import DEFAULT_DATA, DEFAULT_NAMES, DEFAULT_TMP

TITLES = {"shn": "TRAIN SHN", "dae": "TRAIN DAE", "shape": "TRAIN SHAPE", "pose": "TRAIN POSE",
          "shapepose": "FINETUNE SHAPE AND POSE TOGETHER"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python train_all.py",
        description="Train SHN, DAE, shape, pose and the shape+pose fine-tune in order with the "
                    "original's settings (one process per stage; see python -m training --help).",
        epilog="Checkpoints are named " + ", ".join(DEFAULT_NAMES[k] for k in STAGE_KINDS)
               + " (TMP/checkpoints/NAME); evaluate with: python test.py GPU_ID shn dae smplr")
    parser.add_argument("gpu_id", metavar="GPU_ID",
                        help="GPU index as nvidia-smi lists it; -1 runs on the CPU; a comma-separated list "
                             "(0,1,2,3) trains every stage data-parallel over those GPUs (python -m training "
                             "--help)")
    parser.add_argument("--data", metavar="DIR", default=str(DEFAULT_DATA),
                        help="frames root with train.txt and val.txt (default: %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help="few epochs and steps per stage (same networks and code), minutes on a CPU")
    parser.add_argument("--synthetic", metavar="N", type=int, default=0,
                        help="add N synthetic bodies to the SMPLR stages' training points (dae and pose: "
                             "the training subjects' skeletons re-posed when the body model is the open "
                             "default body; shape and shapepose: the body model; see --synthetic-bodies "
                             "in python -m training --help)")
    parser.add_argument("--voc", metavar="DIR", default=None,
                        help="Pascal VOC 2012 folder for the SHN's occlusion augmentation (mode 3)")
    parser.add_argument("--smpl-dir", metavar="DIR", default=None,
                        help="folder with the official SMPL model files (default: smpl/models, "
                             "$SMPLR_SMPL_DIR, else the open default body)")
    parser.add_argument("--tmp", metavar="DIR", default=str(DEFAULT_TMP),
                        help="root of checkpoints/ and logs/ (default: %(default)s)")
    parser.add_argument("--seed", metavar="N", type=int, default=0, help="seed of every stage (default: %(default)s)")
    parser.add_argument("--stages", metavar="KIND", nargs="+", choices=STAGE_KINDS, default=list(STAGE_KINDS),
                        help="stages to run, in the standard order (default: all)")
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's start-up log lines in every stage (hidden by default)")
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument("--resume", action="store_true",
                          help="continue every stage from its latest checkpoint (finished stages are skipped)")
    existing.add_argument("--overwrite", action="store_true", help="replace existing checkpoints of these names")
    return parser


def stage_command(kind: str, args: argparse.Namespace, resume: bool = False) -> List[str]:
    """The ``python -m training`` command line (list) of one stage."""
    command = [sys.executable, "-m", "training", kind, str(args.gpu_id), "--data", str(args.data),
               "--tmp", str(args.tmp), "--seed", str(args.seed), "--name", DEFAULT_NAMES[kind]]
    if args.quick:
        command.append("--quick")
    if args.smpl_dir:
        command += ["--smpl-dir", str(args.smpl_dir)]
    if kind == "shn" and args.voc:
        command += ["--voc", str(args.voc)]
    if kind != "shn" and args.synthetic:
        command += ["--synthetic", str(args.synthetic)]
    if kind == "shapepose":
        command += ["--finetune", DEFAULT_NAMES["shape"], DEFAULT_NAMES["pose"]]
    if resume:
        command.append("--resume")
    if args.overwrite:
        command.append("--overwrite")
    if args.verbose:
        command.append("--verbose")
    return command


def _finished(kind, args):
    """None when the stage has nothing to resume (no latest or best checkpoint), else whether it has
    trained all its epochs."""
    from training.checkpoints import CheckpointStore
    from training.config import stage_config

    store = CheckpointStore(args.tmp, DEFAULT_NAMES[kind])
    # best without latest: killed while the first latest was written; --resume handles it
    state = store.read_state("latest") or store.read_state("best")
    if state is None:
        return None
    epochs = stage_config(kind, quick=args.quick).schedule.epochs
    return state.get("epochs_done", 0) >= epochs


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    args.data = Path(args.data).expanduser().resolve()
    args.tmp = Path(args.tmp).expanduser().resolve()
    for name in ("train.txt", "val.txt"):
        if not (args.data / name).is_file():
            print(f"error: data list not found: {args.data / name} (give --data DIR with train.txt and "
                  "val.txt, e.g. from python -m DataReader.synthesize --out DIR)", file=sys.stderr)
            return 2
    kinds = [k for k in STAGE_KINDS if k in args.stages]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    repo = Path(__file__).resolve().parent
    env["PYTHONPATH"] = os.pathsep.join([str(repo)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    started = time.time()
    for kind in kinds:
        try:
            finished = _finished(kind, args) if args.resume else None
        except Exception as error:  # noqa: BLE001 - a corrupt checkpoint is one line, a bug keeps its traceback
            return report_user_error(error)
        command = stage_command(kind, args, resume=finished is not None)
        print("\n" + "-" * 70 + f"\n{TITLES[kind]}\n$ {shlex.join(command)}\n", flush=True)
        if finished:
            print(f"{DEFAULT_NAMES[kind]!r} already trained (--resume): skipped")
            continue
        stage_started = time.time()
        code = subprocess.call(command, cwd=repo, env=env)
        if code != 0:
            print(f"\ntrain_all: stage {kind} ({DEFAULT_NAMES[kind]!r}) failed with exit code {code} after "
                  f"{time.time() - stage_started:.0f} s; later stages were not run. Fix the error above, then "
                  f"rerun with --resume (or --overwrite), e.g. --stages {' '.join(kinds[kinds.index(kind):])}",
                  file=sys.stderr)
            return 1
        print(f"{TITLES[kind]}: done in {time.time() - stage_started:.0f} s", flush=True)
    print(f"\ntrain_all: {len(kinds)} stage(s) done in {time.time() - started:.0f} s. Evaluate with:\n"
          f"  python test.py {str(args.gpu_id).split(',')[0]} "  # test.py runs on one device
          f"{DEFAULT_NAMES['shn']} {DEFAULT_NAMES['dae']} {DEFAULT_NAMES['shapepose']}"
          + (f" --data {args.data}" if args.data != DEFAULT_DATA else "")
          + (f" --tmp {args.tmp}" if args.tmp != DEFAULT_TMP else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
