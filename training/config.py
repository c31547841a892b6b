"""Settings of every training stage, by concern, with the command-line options they define.

A stage's settings are four concerns composed in one :class:`StageConfig`::

    config.kind       the stage: one of STAGE_KINDS
    config.data       DataConfig      what is read and how samples are drawn (lists, augmentation, seed)
    config.model      ModelConfig     networks, losses, body model, precision
    config.schedule   ScheduleConfig  epochs, batches, steps per epoch, learning-rate curve
    config.run        RunConfig       name, output folder, start point, logging and diagnostics

Each concern checks its own fields (``validate(kind)``: a TrainingError of one
line naming the option). A field that is a command-line option says so in its
metadata (:func:`setting`: flag, help, argparse keywords); ``training.cli``
builds the parser from :func:`command_line_options`, so adding an option is
adding one field here.

``stage_config(kind, **overrides)`` returns the original's settings (SPEC
"SHN", "DAE", "SMPLR"), with ``quick=True`` scaled down (fewer epochs and
steps, same architectures and code path) so that the whole chain runs in
minutes on a CPU. Overrides, and the ``config`` dict that ``state.json``
stores, use flat setting names (``batch_size``, ``num_stacks``, ``data``),
as before the split; :data:`SETTING_OWNERS` maps each to its concern.
"""
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from training import STAGE_KINDS, TrainingError
from training.schedules import LR_WIDTH, SHN_LR_CENTRE, SMPLR_LR_CENTRE, learning_rate

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Default frames root (with train.txt / val.txt in it).
DEFAULT_DATA = REPO_ROOT / "Data" / "frames"
#: Default root of checkpoints/, logs/ and results/.
DEFAULT_TMP = REPO_ROOT / "tmp"

#: Checkpoint names used by ``train_all.py`` (as the original: the fine-tuned
#: shape+pose model is called "smplr" and is what ``test.py`` loads).
DEFAULT_NAMES = {"shn": "shn", "dae": "dae", "shape": "shape", "pose": "pose",
                 "shapepose": "smplr"}

#: SHN augmentation modes of the original ``train_shn.py``.
AUGMENTATION_MODES = {0: "none", 1: "standard (rotation +-0.15 rad, colour, image noise)",
                      2: "synthetic occlusion (VOC occluders / backgrounds)",
                      3: "standard + occlusion"}

#: Sources of ``--synthetic`` bodies (``--synthetic-bodies``).
SYNTHETIC_BODY_SOURCES = {
    "auto": "skeleton for the dae and pose stages when the body model is the open default body, "
            "else model",
    "model": "random betas and poses through the body model (the only source for shape and shapepose)",
    "skeleton": "the training subjects' own skeletons re-posed (dae and pose stages; no model file needed)",
}

#: SHN recipes (``--recipe``): named settings applied before the other
#: options (an explicit option still wins). ``spec`` is the original's
#: (sigmoid cross-entropy on Gaussian-density targets, Adam 0.01, batch 6);
#: it converges very slowly (the original's README: more than 10 days).
#: ``fast`` is what the shipped weights were trained with: point targets
#: scaled to a peak of 1 and an L1 loss on the soft-argmax points of the
#: last stack (integral regression, Sun et al. 2018), Adam 1e-3, batch 32,
#: and the camera-aligned voxel grid (on 20 held-out synthetic sequences
#: 95.8 mm against 119.1 mm for the world grid; README, "The SHN").
RECIPES = {
    "spec": {},
    "fast": dict(heatmap_peak="one", coord_loss_weight=1.0, lr0=1e-3, batch_size=32, grid_axes="camera"),
}
HEATMAP_PEAKS = ("density", "one")

#: SHN voxel-grid axes (``--grid-axes``; ``models.heatmaps.GRID_AXES``).
#: ``world`` (SPEC): grid columns, rows and the 16 coarse depth slices follow
#: the root-relative points' world x, y, z, so with the CLOTH3D camera (looking
#: along world -x) the body's vertical falls on the 15.6 cm depth slices and
#: the image's horizontal on the rows. ``camera``: columns follow the image's
#: horizontal (world +y), rows its vertical (world -z, downwards), depth
#: slices the camera axis (world -x); a fixed signed permutation applied
#: before the targets and undone after the soft-argmax, so every other stage
#: still sees world-axes points. Untrained so far: no recipe selects it.
GRID_AXES = {
    "world": "grid columns, rows, depth slices <- world x, y, z (SPEC)",
    "camera": "grid columns, rows, depth slices <- image x (world +y), image y (world -z), "
              "camera axis (world -x)",
}

#: What ``--quick`` changes (architectures, losses and code path untouched):
#: fewer epochs and steps; the SHN's steps stay capped by one pass over the
#: list, the SMPLR stages take a fixed number of steps (repeating a short
#: list) with the SPEC learning-rate curve compressed into their epochs
#: (``lr_width`` scaled by quick epochs / SPEC epochs), so the rate decays.
#: Measured on 2 CPU cores: a full-size SHN step at batch 6 takes ~5-8 s after
#: ~60 s of tracing, an SMPLR step at batch 256 ~50-80 ms (shapepose, through
#: SMPL, more), so the SHN gets one short epoch.
QUICK = {
    "shn": dict(epochs=1, max_steps=30, val_steps=4),
    "dae": dict(epochs=8, steps=15, lr_width=LR_WIDTH * 8 / 200),
    "shape": dict(epochs=8, steps=15, lr_width=LR_WIDTH * 8 / 200),
    "pose": dict(epochs=8, steps=15, lr_width=LR_WIDTH * 8 / 200),
    "shapepose": dict(epochs=2, steps=8, val_steps=2, lr_width=LR_WIDTH * 2 / 30),
}

#: Settings that only the SHN stage reads; giving one to another stage is an error.
SHN_ONLY_SETTINGS = ("heatmap_peak", "coord_loss_weight", "grid_axes", "stream", "flip", "train_check_batches",
                     "bn_recalibrate")


def setting(default: Any = dataclasses.MISSING, flag: Optional[str] = None, help: Optional[str] = None,
            key: Optional[str] = None, **argparse_options: Any) -> Any:
    """A dataclass field of a concern; with ``flag``, also a command-line option.

    ``help`` may name ``{default}`` (the field's default). ``argparse_options``
    (``metavar``, ``type``, ``choices``, ``nargs``, ``action``) go to
    ``add_argument`` unchanged. ``key``: the flat setting name when it is not
    the field's own (``DataConfig.root`` is ``data``, as ``state.json`` stores it).
    """
    metadata = {"key": key}
    if flag is not None:
        metadata.update(flag=flag, help=help, argparse=argparse_options)
    return field(default=default, metadata=metadata)


def _positive(key, value):
    if value < 1:
        raise TrainingError(f"--{key.replace('_', '-')} must be >= 1, got {value}")


@dataclass
class DataConfig:
    """What a stage reads and how its samples are drawn. Paths absolute after :func:`resolve_paths`."""
    root: Path = setting(DEFAULT_DATA, "--data", key="data", metavar="DIR",
                         help="frames root holding the sequences and the data lists (default: {default})")
    train_list: str = setting("train.txt", "--train-list", metavar="FILE",
                              help="training list inside --data (default: {default})")
    val_list: str = setting("val.txt", "--val-list", metavar="FILE",
                            help="validation list inside --data (default: {default})")
    # SHN: 0..3 (AUGMENTATION_MODES; None: 3 with --voc, else 1); SMPLR: 1 = SPEC input noise, 0 = none
    augmentation: Optional[int] = setting(
        None, "--augmentation", metavar="MODE", type=int,
        help="SHN: " + ", ".join(f"{k} {v}" for k, v in AUGMENTATION_MODES.items())
             + " (default: 3 with --voc, else 1). SMPLR stages: 1 adds the SPEC input noise "
               "to the points (default), 0 trains on clean points")
    flip: bool = setting(False, "--flip", action="store_true",
                         help="SHN: random horizontal flips of the training crops (probability 0.5) with the points "
                              "mirrored and their left and right swapped (the original did not flip)")
    voc: Optional[Path] = setting(
        None, "--voc", metavar="DIR",
        help="Pascal VOC 2012 folder (JPEGImages, SegmentationObject, person_trainval list) "
             "for SHN background/occlusion augmentation (modes 2 and 3)")
    synthetic: int = setting(0, "--synthetic", metavar="N", type=int,
                             help="SMPLR stages: add N random bodies to the training points (default {default})")
    synthetic_bodies: str = setting(
        "auto", "--synthetic-bodies", metavar="SOURCE", choices=tuple(SYNTHETIC_BODY_SOURCES),
        help="where --synthetic bodies come from: " + "; ".join(
            f"{k}: {v}" for k, v in SYNTHETIC_BODY_SOURCES.items()) + " (default: {default})")
    error_bank: Optional[Path] = setting(
        None, "--error-bank", metavar="FILE",
        help="SMPLR stages: an SHN error bank .npz (tools/shn_error_bank.py); the input noise is then the error "
             "of a random SHN prediction (one row of the bank per sample) instead of the SPEC noise, in training "
             "and validation")
    seed: int = setting(0, "--seed", metavar="N", type=int,
                        help="seed of Python, NumPy, TensorFlow and the input pipeline (default: {default})")
    stream: bool = setting(False, "--stream", action="store_true",
                           help="SHN: train on an endless stream of new synthetic frames rendered by worker "
                                "processes (DataReader.stream) instead of the training list; validation stays "
                                "on the val list")
    stream_pool: int = setting(0, "--stream-pool", metavar="N", type=int,
                               help="with --stream: keep N recent frames and reuse them (with new augmentation) "
                                    "when the renderers fall behind the GPU (default {default}: every frame new, "
                                    "the GPU may wait). Which frames are reused depends on timing, so with N > 0 a "
                                    "run (or its --resume) does not repeat its batches exactly; with 0 they are "
                                    "a function of --seed and the step")
    workers: Optional[int] = setting(None, "--workers", metavar="N", type=int,
                                     help="loader / stream processes on backends without tf.data (JAX) and for "
                                          "--stream (default: CPU cores - 1)")

    @property
    def train_path(self) -> Path:
        """The training list's path."""
        return Path(self.root) / self.train_list

    @property
    def val_path(self) -> Path:
        """The validation list's path."""
        return Path(self.root) / self.val_list

    def validate(self, kind: str) -> None:
        """Raise TrainingError (one line, naming the option) for impossible data settings of ``kind``."""
        if self.stream_pool < 0:
            raise TrainingError(f"--stream-pool must be >= 0, got {self.stream_pool}")
        if self.workers is not None and self.workers < 0:
            raise TrainingError(f"--workers must be >= 0, got {self.workers}")
        if kind == "shn" and self.augmentation is not None and self.augmentation not in AUGMENTATION_MODES:
            raise TrainingError(f"--augmentation must be one of {sorted(AUGMENTATION_MODES)} "
                                f"for the SHN, got {self.augmentation}")
        if kind != "shn" and self.augmentation not in (0, 1):
            raise TrainingError(f"--augmentation must be 1 (SPEC input noise) or 0 (none) for "
                                f"the {kind} stage, got {self.augmentation}")
        if self.synthetic < 0:
            raise TrainingError(f"--synthetic must be >= 0, got {self.synthetic}")
        if kind == "shn" and self.error_bank is not None:
            raise TrainingError("--error-bank applies to the SMPLR stages (dae, shape, pose, shapepose), not the shn")
        if self.error_bank is not None and self.augmentation == 0:
            raise TrainingError("--error-bank is input noise: it cannot go with --augmentation 0 (no noise)")
        if self.synthetic_bodies not in SYNTHETIC_BODY_SOURCES:
            raise TrainingError(f"--synthetic-bodies must be one of {', '.join(SYNTHETIC_BODY_SOURCES)}, "
                                f"got {self.synthetic_bodies!r}")
        if self.synthetic_bodies == "skeleton" and kind in ("shape", "shapepose"):
            raise TrainingError(f"--synthetic-bodies skeleton has no betas, so it cannot train the "
                                f"{kind} stage; use model (or auto)")


@dataclass
class ModelConfig:
    """The networks, their losses, the body model and the compute precision."""
    recipe: str = setting(
        "spec", "--recipe", metavar="NAME", choices=tuple(RECIPES),
        help="named SHN settings (RECIPES), applied before the other options: spec (default, the original: "
             "Gaussian-density targets, cross-entropy only, lr 0.01, batch 6), fast (what the "
             "shipped weights use: " + ", ".join(f"{k}={v}" for k, v in RECIPES["fast"].items())
             + "; learns in minutes instead of days)")
    num_stacks: int = setting(5, "--num-stacks", metavar="N", type=int, help="SHN stacks (default {default}, as SPEC)")
    num_features: int = setting(256, "--num-features", metavar="N", type=int,
                                help="SHN features (default {default}, as SPEC)")
    heatmap_peak: str = setting(
        "density", "--heatmap-peak", metavar="KIND", choices=HEATMAP_PEAKS,
        help="SHN point heatmap targets: density (SPEC: the Gaussian density, peak 0.0635; the loss "
             "then falls by pushing every logit down) or one (scaled to a peak of 1, the "
             "original's commented-out line)")
    coord_loss_weight: float = setting(
        0.0, "--coord-loss-weight", metavar="W", type=float,
        help="SHN: add W x the mean L1 error (metres) of the last stack's soft-argmax points to the "
             "loss (integral regression, Sun et al. 2018; SPEC 0, fast 1)")
    grid_axes: str = setting(
        "world", "--grid-axes", metavar="AXES", choices=tuple(GRID_AXES),
        help="axes of the SHN's 64 x 64 x 16 voxel grid: world (default, SPEC: columns, rows, "
             "depth slices <- world x, y, z, so the body's vertical lies on the 16 coarse "
             "depth slices) or camera (columns <- image x = world +y, rows <- image y = world "
             "-z, depth slices <- the camera axis = world -x; points outside the SHN stay in "
             "world axes; saved with the checkpoint; --recipe fast selects camera)")
    dae_dropout: float = setting(
        0.2, "--dae-dropout", metavar="RATE", type=float,
        help="DAE dropout rate on its input and middle layer (default {default} = the SPEC's keep "
             "0.8; 0 lets the DAE see every coordinate, which denoises much better on "
             "small data)")
    smpl_dir: Optional[Path] = setting(
        None, "--smpl-dir", metavar="DIR",
        help="folder with the official SMPL model files (default: smpl/models, "
             "$SMPLR_SMPL_DIR, else the open default body)")
    mixed_precision: bool = setting(
        False, "--mixed-precision", action="store_true",
        help="SHN on GPU: float16 compute with loss scaling (TensorFlow) or bfloat16 (JAX); heatmap read-out "
             "and loss stay float32")

    def validate(self, kind: str) -> None:
        """Raise TrainingError (one line, naming the option) for impossible model settings of ``kind``."""
        if self.recipe not in RECIPES:
            raise TrainingError(f"--recipe must be one of {', '.join(RECIPES)}, got {self.recipe!r}")
        if self.recipe != "spec" and kind != "shn":
            raise TrainingError(f"--recipe {self.recipe} applies to the shn stage only")
        if self.heatmap_peak not in HEATMAP_PEAKS:
            raise TrainingError(f"--heatmap-peak must be one of {', '.join(HEATMAP_PEAKS)}, "
                                f"got {self.heatmap_peak!r}")
        if self.grid_axes not in GRID_AXES:
            raise TrainingError(f"--grid-axes must be one of {', '.join(GRID_AXES)}, got {self.grid_axes!r}")
        if not 0.0 <= self.coord_loss_weight < float("inf"):
            raise TrainingError(f"--coord-loss-weight must be a finite number >= 0, got {self.coord_loss_weight}")
        if self.num_stacks < 1 or self.num_features < 2 or self.num_features % 2:
            raise TrainingError(f"--num-stacks must be >= 1 and --num-features even and >= 2, got "
                                f"{self.num_stacks} and {self.num_features}")
        if not 0.0 <= self.dae_dropout < 1.0:
            raise TrainingError(f"--dae-dropout must be in [0, 1), got {self.dae_dropout}")
        if self.mixed_precision and kind != "shn":
            raise TrainingError("--mixed-precision applies to the SHN stage only")


@dataclass
class ScheduleConfig:
    """Epochs, batches and the learning-rate curve. Learning rates per step, sizes in samples,
    ``lr_centre`` and ``lr_width`` in epochs of the sigmoid (``training.schedules``)."""
    epochs: int = setting(flag="--epochs", metavar="N", type=int, help="epochs (default 200; shapepose 30)")
    batch_size: int = setting(flag="--batch-size", metavar="N", type=int,
                              help="batch size (default: SHN 6, SMPLR 256)")
    lr0: float = setting(flag="--lr", metavar="LR", type=float,
                         help="initial learning rate lr0 of the schedule (default 0.01; shapepose 1e-4)")
    lr_centre: float = setting()            # sigmoid centre of the schedule (10 SHN, 4 SMPLR)
    steps_growth: Optional[int] = setting()  # SHN: at most growth*(epoch+1) steps per epoch
    max_steps: Optional[int] = setting()     # cap on steps per epoch (SMPLR: 400; never more than one pass)
    lr_width: float = setting(
        LR_WIDTH, "--lr-width", metavar="EPOCHS", type=float,
        help="width of the learning-rate sigmoid in epochs (SPEC 12.5: the rate halves at "
             "epoch 12.5*10 for the SHN, 12.5*4 for SMPLR); e.g. 12.5*E/200 fits the whole "
             "SPEC curve into E epochs")
    steps: Optional[int] = setting(
        None, "--steps", metavar="N", type=int,
        help="exactly N training steps per epoch, repeating the list when it is short "
             "(default, as the original: SHN min(500*(epoch+1), batches in the list), "
             "SMPLR min(400, batches in the list))")
    val_steps: Optional[int] = setting(None, "--val-steps", metavar="N", type=int,
                                       help="at most this many validation batches (default: the whole list)")

    def learning_rate(self, epoch: int) -> float:
        """Learning rate (float, per step) of 0-based ``epoch`` (``training.schedules.learning_rate``)."""
        return learning_rate(epoch, self.lr0, self.lr_centre, self.lr_width)

    def validate(self, kind: str) -> None:
        """Raise TrainingError (one line, naming the option) for an impossible schedule."""
        _positive("epochs", self.epochs)
        _positive("batch_size", self.batch_size)
        for key in ("max_steps", "steps", "val_steps", "steps_growth"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise TrainingError(f"{key} must be >= 1, got {value}")
        if self.lr_width <= 0:
            raise TrainingError(f"--lr-width must be > 0, got {self.lr_width}")
        if not self.lr0 > 0 or self.lr0 == float("inf"):
            raise TrainingError(f"--lr must be a finite number > 0, got {self.lr0}")


@dataclass
class RunConfig:
    """Where a run writes, where it starts from, and what it logs."""
    name: str = setting(
        flag="--name", metavar="NAME",
        help="checkpoint/log name (default: " + ", ".join(f"{k} -> {v}" for k, v in DEFAULT_NAMES.items()) + ")")
    tmp: Path = setting(DEFAULT_TMP, "--tmp", metavar="DIR",
                        help="root of checkpoints/, logs/ and results/ (default: {default})")
    finetune: Tuple[str, ...] = setting(
        (), "--finetune", nargs="+", metavar="NAME",
        help="start from these checkpoints (best slot): one name of the same kind; for "
             "shapepose SHAPE POSE (default: shape pose) or one shapepose name")
    resume: bool = setting(False, "--resume", action="store_true",
                           help="continue NAME from its latest checkpoint (epoch, optimiser, best score)")
    overwrite: bool = setting(False, "--overwrite", action="store_true",
                              help="replace an existing checkpoint NAME (and its logs) instead of stopping")
    quick: bool = setting(
        False, "--quick", action="store_true",
        help="few epochs and steps, same networks and code (for trying things out; "
             "per stage: " + "; ".join(f"{k} " + ", ".join(f"{n}={v:g}" for n, v in q.items())
                                       for k, q in QUICK.items()) + ")")
    log_every: int = setting(50, "--log-every", metavar="N", type=int,
                             help="read the training losses to the host every N steps (default {default}; "
                                  "one sync each)")
    log_images: int = setting(4, "--log-images", metavar="N", type=int,
                              help="SHN: validation crops with skeletons written to TensorBoard "
                                   "(default {default})")
    train_check_batches: int = setting(
        0, "--train-check-batches", metavar="N", type=int,
        help="SHN: at each validation also score N un-augmented training batches (training=False; "
             "on JAX also with batch statistics), to see batch-norm or over-fitting gaps")
    bn_recalibrate: int = setting(
        0, "--bn-recalibrate", metavar="N", type=int,
        help="SHN: before each validation and checkpoint, re-estimate the batch-norm statistics "
             "with the current weights on N un-augmented training batches (precise batch norm)")
    verbose: bool = setting(False, "--verbose", action="store_true",
                            help="show TensorFlow's start-up log lines (oneDNN, CUDA stubs; hidden by default)")

    def __post_init__(self):
        self.finetune = tuple(self.finetune)

    def validate(self, kind: str) -> None:
        """Raise TrainingError (one line, naming the option) for impossible run settings of ``kind``."""
        if self.log_every < 1:
            raise TrainingError(f"--log-every must be >= 1, got {self.log_every}")
        if self.train_check_batches < 0 or self.bn_recalibrate < 0:
            raise TrainingError("--train-check-batches and --bn-recalibrate must be >= 0")
        if self.resume and self.overwrite:
            raise TrainingError("--resume and --overwrite exclude each other")
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise TrainingError(f"--name must be a plain folder name, got {self.name!r}")
        if kind == "shapepose" and len(self.finetune) not in (0, 1, 2):
            raise TrainingError("shapepose --finetune takes SHAPE POSE checkpoint names "
                                f"(or one SMPLR name), got {list(self.finetune)}")


#: The concerns of a StageConfig: attribute name -> dataclass, in command-line order.
CONCERNS = {"data": DataConfig, "model": ModelConfig, "schedule": ScheduleConfig, "run": RunConfig}
#: Titles of the concerns' option groups in ``--help``.
CONCERN_TITLES = {"data": "data", "model": "model and device", "schedule": "schedule", "run": "run"}


def setting_key(concern_field: dataclasses.Field) -> str:
    """The flat setting name of a concern's dataclass field (``root`` -> ``data``)."""
    return concern_field.metadata.get("key") or concern_field.name


#: Flat setting name -> (concern attribute, field name), e.g. "batch_size" -> ("schedule", "batch_size").
SETTING_OWNERS = {setting_key(f): (concern, f.name)
                  for concern, cls in CONCERNS.items() for f in dataclasses.fields(cls)}


@dataclass
class StageConfig:
    """Everything one training stage needs: its kind and the four concerns (module docstring)."""
    kind: str                  # one of STAGE_KINDS
    data: DataConfig
    model: ModelConfig
    schedule: ScheduleConfig
    run: RunConfig

    @classmethod
    def from_settings(cls, kind: str, settings: Dict[str, Any]) -> "StageConfig":
        """A StageConfig from flat settings ({name: value}, the names of :data:`SETTING_OWNERS`)."""
        unknown = sorted(set(settings) - set(SETTING_OWNERS))
        if unknown:
            raise TrainingError(f"unknown setting {unknown[0]!r} for stage {kind}")
        by_concern = {concern: {} for concern in CONCERNS}
        for key, value in settings.items():
            concern, name = SETTING_OWNERS[key]
            by_concern[concern][name] = value
        return cls(kind=kind, **{concern: CONCERNS[concern](**values) for concern, values in by_concern.items()})

    def validate(self) -> None:
        """Raise TrainingError (one line, naming the value) for impossible settings."""
        for concern in CONCERNS:
            getattr(self, concern).validate(self.kind)

    def __getattr__(self, name):
        """A setting read by its flat name (``config.batch_size``), as callers written before the
        split and ``state.json`` name it; new code reads the concern (``config.schedule.batch_size``)."""
        owner = SETTING_OWNERS.get(name)
        if owner is None or name.startswith("_") or name in CONCERNS:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        concern, field_name = owner
        return getattr(object.__getattribute__(self, concern), field_name)

    @property
    def checkpoint_dir(self) -> Path:
        return Path(self.run.tmp) / "checkpoints" / self.run.name

    @property
    def log_dir(self) -> Path:
        return Path(self.run.tmp) / "logs" / self.run.name

    def settings(self) -> Dict[str, Any]:
        """Flat {setting name: value} of every concern, with ``kind``."""
        out = {"kind": self.kind}
        for key, (concern, name) in SETTING_OWNERS.items():
            out[key] = getattr(getattr(self, concern), name)
        return out

    def to_json(self) -> Dict[str, Any]:
        """JSON-friendly flat dict (paths as strings), as ``state.json`` stores it under ``config``."""
        return {key: str(value) if isinstance(value, Path) else (list(value) if isinstance(value, tuple) else value)
                for key, value in self.settings().items()}


def _spec_defaults(kind):
    """The original's settings of one stage kind."""
    if kind == "shn":
        return dict(epochs=200, batch_size=6, lr0=0.01, lr_centre=SHN_LR_CENTRE,
                    steps_growth=500, max_steps=None, augmentation=None)
    common = dict(epochs=200, batch_size=256, lr0=0.01, lr_centre=SMPLR_LR_CENTRE,
                  steps_growth=None, max_steps=400, augmentation=1)
    if kind == "shapepose":
        common.update(epochs=30, lr0=1e-4, finetune=("shape", "pose"))
    return common


def stage_config(kind: str, quick: Optional[bool] = False, **overrides: Any) -> StageConfig:
    """A validated :class:`StageConfig` for ``kind`` with SPEC defaults.

    ``overrides`` are flat setting names (:data:`SETTING_OWNERS`); the recipe's
    settings apply first, then ``quick``'s (:data:`QUICK`), then every override
    whose value is not None (so command-line options win). Settings that only
    the SHN reads (:data:`SHN_ONLY_SETTINGS`) are refused for other stages.
    """
    if kind not in STAGE_KINDS:
        raise TrainingError(f"unknown stage {kind!r}; expected one of {', '.join(STAGE_KINDS)}")
    quick = bool(quick)
    values = dict(name=DEFAULT_NAMES[kind], quick=quick)
    values.update(_spec_defaults(kind))
    values.update(RECIPES.get(overrides.get("recipe") or "spec", {}))  # an unknown one: ModelConfig.validate
    if quick:
        values.update(QUICK[kind])
    given = {key: value for key, value in overrides.items() if value is not None}
    if kind != "shn" and any(given.get(key) for key in SHN_ONLY_SETTINGS):
        flags = [command_line_flag(key) for key in SHN_ONLY_SETTINGS]
        raise TrainingError(f"{', '.join(flags[:-1])} and {flags[-1]} apply to the shn stage only")
    values.update(given)
    config = StageConfig.from_settings(kind, values)
    config.validate()
    return config


def command_line_options() -> List[Tuple[str, str, str, str, Dict[str, Any]]]:
    """(concern, flat setting name, flag, help, argparse keywords) of every option, in ``--help`` order.

    Help texts have ``{default}`` filled in; every option's argparse default is
    None ("not given"), so that :func:`stage_config` applies the stage's own defaults.
    """
    options = []
    for concern, cls in CONCERNS.items():
        for f in dataclasses.fields(cls):
            if "flag" not in f.metadata:
                continue
            help_text = f.metadata["help"]
            if f.default is not dataclasses.MISSING:
                help_text = help_text.replace("{default}", str(f.default))
            options.append((concern, setting_key(f), f.metadata["flag"], help_text, dict(f.metadata["argparse"])))
    return options


def command_line_flag(key: str) -> str:
    """The ``--flag`` of a flat setting name."""
    concern, name = SETTING_OWNERS[key]
    return next(f.metadata["flag"] for f in dataclasses.fields(CONCERNS[concern]) if f.name == name)


def resolve_paths(config: StageConfig) -> StageConfig:
    """Absolute paths and an existing data list; returns the same config."""
    data, model, run = config.data, config.model, config.run
    data.root = Path(data.root).expanduser().resolve()
    run.tmp = Path(run.tmp).expanduser().resolve()
    for list_name in (data.train_list, data.val_list):
        path = data.root / list_name
        if not path.is_file():
            raise TrainingError(f"data list not found: {path} (give --data DIR with "
                                f"{data.train_list} and {data.val_list} in it)")
    if data.voc is not None:
        data.voc = Path(data.voc).expanduser().resolve()
        if not data.voc.is_dir():
            raise TrainingError(f"--voc folder not found: {data.voc}")
    if data.error_bank is not None:
        data.error_bank = Path(data.error_bank).expanduser().resolve()
        if not data.error_bank.is_file():
            raise TrainingError(f"--error-bank file not found: {data.error_bank}")
    if model.smpl_dir is not None:
        model.smpl_dir = Path(model.smpl_dir).expanduser().resolve()
        if not model.smpl_dir.is_dir():
            raise TrainingError(f"--smpl-dir folder not found: {model.smpl_dir}")
    return config
