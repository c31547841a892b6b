"""Settings of every training stage, in one place.

``stage_config(kind, **overrides)`` returns a :class:`StageConfig` holding the
original's settings (SPEC "SHN", "DAE", "SMPLR"), with ``quick=True`` scaled
down (fewer epochs and steps, same architectures and code path) so that the
whole chain runs in minutes on a CPU. Command-line options only override
fields of this dataclass.
"""
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

from training import STAGE_KINDS, TrainingError
from training.schedules import LR_WIDTH, SHN_LR_CENTRE, SMPLR_LR_CENTRE

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


@dataclass
class StageConfig:
    """Everything one training stage needs. Units: learning rates per step,
    sizes in samples; paths absolute after :func:`resolve_paths`."""
    kind: str                       # one of STAGE_KINDS
    name: str                       # checkpoint and log name (tmp/checkpoints/NAME)
    epochs: int                     # epochs to train (200; shapepose 30)
    batch_size: int                 # 6 (SHN) or 256 (SMPLR)
    lr0: float                      # initial learning rate
    lr_centre: float                # sigmoid centre of the schedule (10 SHN, 4 SMPLR)
    steps_growth: Optional[int]     # SHN: at most growth*(epoch+1) steps per epoch
    max_steps: Optional[int]        # cap on steps per epoch (SMPLR: 400; never more than one pass)
    steps: Optional[int] = None     # --steps: exactly this many steps per epoch (repeats the list)
    lr_width: float = LR_WIDTH      # sigmoid width in epochs (SPEC 12.5; smaller = faster decay)
    val_steps: Optional[int] = None  # cap on validation batches (None: whole list)
    data: Path = DEFAULT_DATA
    train_list: str = "train.txt"
    val_list: str = "val.txt"
    tmp: Path = DEFAULT_TMP
    augmentation: Optional[int] = None  # SHN: 0..3 (AUGMENTATION_MODES; None: 3 with --voc, else 1);
                                        # SMPLR: 1 = SPEC input noise, 0 = none
    voc: Optional[Path] = None      # Pascal VOC 2012 root for augmentation 2/3
    smpl_dir: Optional[Path] = None  # folder with the SMPL model files (default: smpl.find_models)
    seed: int = 0
    finetune: Tuple[str, ...] = ()  # checkpoint names to start from
    resume: bool = False
    overwrite: bool = False
    mixed_precision: bool = False
    synthetic: int = 0              # SMPLR: extra synthetic bodies added to the training arrays
    synthetic_bodies: str = "auto"  # where they come from: SYNTHETIC_BODY_SOURCES
    dae_dropout: float = 0.2        # DAE dropout rate on its input and middle layer (SPEC: keep 0.8)
    num_stacks: int = 5             # SHN stacks (SPEC: 5)
    num_features: int = 256         # SHN features (SPEC: 256)
    recipe: str = "spec"            # SHN: a named set of the options below (RECIPES)
    heatmap_peak: str = "density"   # SHN point targets: "density" (SPEC, peak 0.0635) or "one"
    coord_loss_weight: float = 0.0  # SHN: weight of the L1 loss on the last stack's soft-argmax points
    grid_axes: str = "world"        # SHN: axes of the voxel grid, GRID_AXES ("world": SPEC)
    stream: bool = False            # SHN: train on the endless synthetic stream, not the list
    stream_pool: int = 0            # SHN --stream: frames kept for reuse when the renderers fall behind
    workers: Optional[int] = None   # loader / stream worker processes off TensorFlow (None: cores - 1)
    train_check_batches: int = 0    # SHN: also evaluate this many un-augmented training batches
    bn_recalibrate: int = 0         # SHN: re-estimate batch-norm statistics on this many batches
    log_every: int = 50             # steps between reads of the training losses (one host sync)
    log_images: int = 4             # images written to TensorBoard per validation
    quick: bool = False

    @property
    def checkpoint_dir(self):
        return Path(self.tmp) / "checkpoints" / self.name

    @property
    def log_dir(self):
        return Path(self.tmp) / "logs" / self.name

    def to_json(self):
        """JSON-friendly dict (paths as strings)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = str(value) if isinstance(value, Path) else (
                list(value) if isinstance(value, tuple) else value)
        return out


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


#: SHN recipes (``--recipe``): named settings applied before the other
#: options (an explicit option still wins). ``spec`` is the original's
#: (sigmoid cross-entropy on Gaussian-density targets, Adam 0.01, batch 6);
#: it converges very slowly (the original's README: more than 10 days).
#: ``fast`` is what the shipped weights were trained with: point targets
#: scaled to a peak of 1 and an L1 loss on the soft-argmax points of the
#: last stack (integral regression, Sun et al. 2018), Adam 1e-3, batch 32.
RECIPES = {
    "spec": {},
    "fast": dict(heatmap_peak="one", coord_loss_weight=1.0, lr0=1e-3, batch_size=32),
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


def stage_config(kind, quick=False, **overrides):
    """A :class:`StageConfig` for ``kind`` with SPEC defaults.

    ``quick`` applies :data:`QUICK`; then every keyword whose value is not None
    overrides the field of that name (so command-line options win).
    """
    if kind not in STAGE_KINDS:
        raise TrainingError(f"unknown stage {kind!r}; expected one of {', '.join(STAGE_KINDS)}")
    values = dict(kind=kind, name=DEFAULT_NAMES[kind], quick=quick)
    values.update(_spec_defaults(kind))
    recipe = overrides.get("recipe") or "spec"
    if recipe not in RECIPES:
        raise TrainingError(f"--recipe must be one of {', '.join(RECIPES)}, got {recipe!r}")
    if recipe != "spec" and kind != "shn":
        raise TrainingError(f"--recipe {recipe} applies to the shn stage only")
    values.update(RECIPES[recipe])
    if quick:
        values.update(QUICK[kind])
    names = {f.name for f in dataclasses.fields(StageConfig)}
    for key, value in overrides.items():
        if key not in names:
            raise TrainingError(f"unknown setting {key!r} for stage {kind}")
        if value is not None:
            values[key] = value
    config = StageConfig(**values)
    validate(config)
    return config


def validate(config):
    """Raise TrainingError (one line, naming the value) for impossible settings."""
    for key in ("epochs", "batch_size"):
        if getattr(config, key) < 1:
            raise TrainingError(f"--{key.replace('_', '-')} must be >= 1, got {getattr(config, key)}")
    if config.log_every < 1:
        raise TrainingError(f"--log-every must be >= 1, got {config.log_every}")
    for key in ("max_steps", "steps", "val_steps", "steps_growth"):
        value = getattr(config, key)
        if value is not None and value < 1:
            raise TrainingError(f"{key} must be >= 1, got {value}")
    if config.lr_width <= 0:
        raise TrainingError(f"--lr-width must be > 0, got {config.lr_width}")
    if not config.lr0 > 0 or config.lr0 == float("inf"):
        raise TrainingError(f"--lr must be a finite number > 0, got {config.lr0}")
    if config.heatmap_peak not in HEATMAP_PEAKS:
        raise TrainingError(f"--heatmap-peak must be one of {', '.join(HEATMAP_PEAKS)}, got {config.heatmap_peak!r}")
    if config.grid_axes not in GRID_AXES:
        raise TrainingError(f"--grid-axes must be one of {', '.join(GRID_AXES)}, got {config.grid_axes!r}")
    if not 0.0 <= config.coord_loss_weight < float("inf"):
        raise TrainingError(f"--coord-loss-weight must be a finite number >= 0, got {config.coord_loss_weight}")
    if config.stream_pool < 0:
        raise TrainingError(f"--stream-pool must be >= 0, got {config.stream_pool}")
    if config.workers is not None and config.workers < 0:
        raise TrainingError(f"--workers must be >= 0, got {config.workers}")
    if config.train_check_batches < 0 or config.bn_recalibrate < 0:
        raise TrainingError("--train-check-batches and --bn-recalibrate must be >= 0")
    if config.num_stacks < 1 or config.num_features < 2 or config.num_features % 2:
        raise TrainingError(f"--num-stacks must be >= 1 and --num-features even and >= 2, got "
                            f"{config.num_stacks} and {config.num_features}")
    if config.kind == "shn" and config.augmentation is not None \
            and config.augmentation not in AUGMENTATION_MODES:
        raise TrainingError(f"--augmentation must be one of {sorted(AUGMENTATION_MODES)} "
                            f"for the SHN, got {config.augmentation}")
    if config.kind != "shn" and config.augmentation not in (0, 1):
        raise TrainingError(f"--augmentation must be 1 (SPEC input noise) or 0 (none) for "
                            f"the {config.kind} stage, got {config.augmentation}")
    if config.resume and config.overwrite:
        raise TrainingError("--resume and --overwrite exclude each other")
    if not config.name or "/" in config.name or config.name.startswith("."):
        raise TrainingError(f"--name must be a plain folder name, got {config.name!r}")
    if not 0.0 <= config.dae_dropout < 1.0:
        raise TrainingError(f"--dae-dropout must be in [0, 1), got {config.dae_dropout}")
    if config.synthetic < 0:
        raise TrainingError(f"--synthetic must be >= 0, got {config.synthetic}")
    if config.synthetic_bodies not in SYNTHETIC_BODY_SOURCES:
        raise TrainingError(f"--synthetic-bodies must be one of {', '.join(SYNTHETIC_BODY_SOURCES)}, "
                            f"got {config.synthetic_bodies!r}")
    if config.synthetic_bodies == "skeleton" and config.kind in ("shape", "shapepose"):
        raise TrainingError(f"--synthetic-bodies skeleton has no betas, so it cannot train the "
                            f"{config.kind} stage; use model (or auto)")
    if config.kind == "shapepose" and len(config.finetune) not in (0, 1, 2):
        raise TrainingError("shapepose --finetune takes SHAPE POSE checkpoint names "
                            f"(or one SMPLR name), got {list(config.finetune)}")


def resolve_paths(config):
    """Absolute paths and an existing data list; returns the same config."""
    config.data = Path(config.data).expanduser().resolve()
    config.tmp = Path(config.tmp).expanduser().resolve()
    for list_name in (config.train_list, config.val_list):
        path = config.data / list_name
        if not path.is_file():
            raise TrainingError(f"data list not found: {path} (give --data DIR with "
                                f"{config.train_list} and {config.val_list} in it)")
    if config.voc is not None:
        config.voc = Path(config.voc).expanduser().resolve()
        if not config.voc.is_dir():
            raise TrainingError(f"--voc folder not found: {config.voc}")
    if config.smpl_dir is not None:
        config.smpl_dir = Path(config.smpl_dir).expanduser().resolve()
        if not config.smpl_dir.is_dir():
            raise TrainingError(f"--smpl-dir folder not found: {config.smpl_dir}")
    return config
