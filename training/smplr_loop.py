"""The SMPLR training loop for the stages that read points, not images (SPEC "DAE", "SMPLR").

Inputs are the ground-truth 41 points of the data list (plus ``--synthetic``
bodies) with the SPEC input noise (uniform(-0.5, 0.5) * 2 sigma), targets
the clean points, rotations and shape. One class per stage on the shared
``SMPLRStage`` (data, optimiser, steps, validation), each with its kind of step,
compiled by ``training.steps`` (``tf.function`` on TensorFlow, ``jax.jit`` on
JAX), with Adam:

- ``DAEStage``        dae:       noisy points -> DAE -> L1 to the clean points.
- ``ShapeStage``      shape:     bone features of the noisy points -> ShapeNet -> L1 + 0.01 mean|shape|.
- ``PoseStage``       pose:      bone directions of the noisy points -> PoseNet -> L1 on the matrices.
- ``ShapePoseStage``  shapepose: both nets -> SMPL layer -> L1 pose + shape + SMPL joints + landmarks,
  starting from the shape and pose checkpoints (``--finetune SHAPE POSE``).

A new stage is a subclass naming its nets (``build_nets``, ``model_objects``),
its forward pass (``_forward``) and, when it predicts no points, how validation
builds them (``_body_points``); ``STAGE_CLASSES`` maps kinds to classes.

Each epoch draws its training batches (order and noise) from (seed, epoch),
and the dropout seeds are saved with the ``latest`` checkpoint, so a run
killed and resumed repeats what an uninterrupted run does from the resumed
epoch on (``training.runner``).

Validation (the val list, with a fixed draw of the same noise, so epochs are
comparable): the stage's loss (best checkpoint = lowest, as the original), and
errors in mm: DAE output for ``dae``; for the others the SMPL body built from
the prediction, with the ground-truth pose for ``shape`` and the ground-truth
shape for ``pose`` (as the original); mean per-joint rotation error in degrees.
"""
from pathlib import Path
from typing import List, Optional

import numpy as np
import keras
from keras import ops

import DataReader
import smpl
from models import DAE, SMPLR, dae_loss, pose_loss, shape_loss, shapepose_loss
from models.smplr import nearest_rotation
from smpl import kinematics
from smpl.io import OPEN_BODY_FILES
from training import TrainingError
from training.checkpoints import load_named
from training.config import StageConfig
from training.metrics import PointErrorMeter, rotation_errors_deg
from training.runner import Stage, epoch_seed, prepare, run, set_seeds
from training.schedules import smplr_steps
from training.skeleton_bodies import skeleton_arrays
from training.steps import backend, make_steps
from training.synthetic_bodies import synthetic_arrays

NUM_POINTS = kinematics.NUM_POINTS


def load_body_model(smpl_dir: Optional[Path] = None) -> smpl.SMPL:
    """The SMPL layer of ``--smpl-dir`` (or ``smpl.find_models``' default choice)."""
    try:
        female, male = smpl.find_models(smpl_dir)
        return smpl.SMPL(female, male)
    except (FileNotFoundError, ValueError) as error:
        raise TrainingError(str(error)) from None


def synthetic_body_source(config: StageConfig) -> str:
    """"model" or "skeleton": where this stage's ``--synthetic`` bodies come from.

    ``auto`` re-poses the training subjects' skeletons for the dae and pose
    stages when the body model is the open default body (whose skeleton is
    not SMPL's, see ``training.skeleton_bodies``), and uses the body model
    otherwise; shape and shapepose need betas, so always the model.
    """
    if config.data.synthetic_bodies != "auto":
        return config.data.synthetic_bodies
    if config.kind in ("shape", "shapepose"):
        return "model"
    try:
        female, male = smpl.find_models(config.model.smpl_dir)
    except FileNotFoundError:
        return "skeleton"
    open_body = {Path(p).resolve() for p in OPEN_BODY_FILES.values()}
    return "skeleton" if {Path(female).resolve(), Path(male).resolve()} <= open_body else "model"


class SMPLRStage(Stage):
    """What the DAE / shape / pose / shapepose stages share: the points data (with
    ``--synthetic`` bodies), the optimiser, the steps, and validation.

    One subclass per stage (``STAGE_CLASSES``) names its nets and defines their
    forward pass; ``SMPLRStage(config)`` builds the subclass of ``config.kind``.
    """
    kind = None
    #: Checkpoint kinds a ``--finetune`` name of this stage may be.
    finetune_kinds = ()
    #: Validation metric names shown on the epoch's summary line.
    summary_metrics = ("loss", "error_all_mm")

    def __new__(cls, config):
        if cls is SMPLRStage:
            cls = STAGE_CLASSES[config.kind]
        return super().__new__(cls)

    def __init__(self, config):
        self.config = config
        data, schedule = config.data, config.schedule
        set_seeds(data.seed)
        self.train_arrays = DataReader.SMPLRArrays.from_list(data.root, data.train_path, progress=True)
        self.val_arrays = DataReader.SMPLRArrays.from_list(data.root, data.val_path)
        self.body_source = synthetic_body_source(config) if data.synthetic else None
        self.smpl_layer = load_body_model(config.model.smpl_dir) if self.needs_body_model() else None
        if data.synthetic:
            self.train_arrays = self.train_arrays.concatenate(self._synthetic_arrays())
        self.num_train = len(self.train_arrays)

        self.trained = self.build_nets()
        self.variables = [v for model in self.trained for v in model.trainable_variables]
        self.optimizer = keras.optimizers.Adam(learning_rate=schedule.lr0)
        self.optimizer.build(self.variables)

        self.noise = noise = data.augmentation == 1
        self.error_bank = None
        if data.error_bank is not None:
            try:
                self.error_bank = DataReader.load_error_bank(data.error_bank)
            except ValueError as exc:
                raise TrainingError(str(exc)) from None
        self.batch_arrays = self.train_arrays
        if self.num_train < schedule.batch_size:
            # A list smaller than one batch: repeat it so that batches are full
            # (every copy draws its own noise).
            copies = -(-schedule.batch_size // self.num_train)
            self.batch_arrays = self.batch_arrays.concatenate(*([self.batch_arrays] * (copies - 1)))
        # tf.data on TensorFlow, the NumPy twin elsewhere (same arrays, same noise model).
        self.make_batches = DataReader.smplr_dataset if backend() == "tensorflow" else DataReader.smplr_batches
        # One fixed draw of validation noise, kept in memory: every epoch sees the same inputs.
        val = self.make_batches(self.val_arrays, schedule.batch_size, training=False, noise=noise, seed=data.seed + 1,
                                error_bank=self.error_bank)
        self.val_batches = []
        for batch in val:
            if schedule.val_steps is not None and len(self.val_batches) >= schedule.val_steps:
                break
            self.val_batches.append(batch)
        if not self.val_batches:
            raise TrainingError(f"{data.val_path}: no validation samples")
        params = sum(int(np.prod(v.shape)) for v in self.variables)
        noise_text = "off" if not noise else (
            "SPEC" if self.error_bank is None else f"SHN error bank ({len(self.error_bank)} rows)")
        source = f", {self.body_source} bodies" if self.body_source else ""
        print(f"{self.kind}: {params / 1e6:.2f} M trainable parameters, {self.num_train} training "
              f"({data.synthetic} synthetic{source}) / {len(self.val_arrays)} validation samples, "
              f"batch {schedule.batch_size}, input noise {noise_text}")
        self.steps_impl = make_steps(self.trained, self.optimizer, self._train_forward, self._val_forward)

    # ------------------------------------------------------------------ parts
    def needs_body_model(self) -> bool:
        """Whether the stage loads the SMPL layer (its nets or its synthetic bodies go through it)."""
        return True

    def build_nets(self) -> List[keras.Model]:
        """Create the stage's nets (with their variables); returns the list of trained models."""
        raise NotImplementedError

    def _synthetic_arrays(self):
        """The ``--synthetic`` bodies (``SMPLRArrays``) from ``self.body_source``."""
        data = self.config.data
        if self.body_source == "model":
            return synthetic_arrays(self.smpl_layer, data.synthetic, seed=data.seed)
        if self.smpl_layer is not None:  # the pose stage has the models loaded already
            models = (self.smpl_layer.female, self.smpl_layer.male)
        else:
            models = [smpl.load_model(path) for path in smpl.find_models(self.config.model.smpl_dir)]
        return skeleton_arrays(self.train_arrays, data.synthetic, seed=data.seed, models=models)

    def finetune(self):
        names = list(self.config.run.finetune)
        if not names:
            return
        self.load_finetune(names)
        self.steps_impl.reload()
        print(f"{self.kind}: starting from checkpoint{'s' if len(names) > 1 else ''} {', '.join(names)}")

    def load_finetune(self, names: List[str]) -> None:
        """Load the ``--finetune`` checkpoint ``names`` (a list) into the nets."""
        if len(names) != 1:
            raise TrainingError(f"{self.kind} --finetune takes one checkpoint name, got {names}")
        load_named(self.config.run.tmp, names[0], self.model_objects(), kinds=self.finetune_kinds,
                   purpose="fine-tune from")

    def steps(self, epoch):
        schedule = self.config.schedule
        if schedule.steps is not None:
            return schedule.steps
        return smplr_steps(self.num_train, schedule.batch_size, schedule.max_steps or 400)

    def train_batches(self, epoch):
        """Endless batches for 0-based ``epoch``, shuffled and noised from ``epoch_seed(seed, epoch)``
        (reshuffled, fresh noise on every further pass), so that an epoch draws the same batches
        whether the run went through or was resumed before it."""
        data = self.make_batches(self.batch_arrays, self.config.schedule.batch_size, training=True,
                                 noise=self.noise, seed=epoch_seed(self.config.data.seed, epoch),
                                 error_bank=self.error_bank)
        return iter(data.repeat() if backend() == "tensorflow" else data.batches())

    # ------------------------------------------------------------------ steps
    def _forward(self, batch, training):
        """Predictions and loss terms ('loss' among them) of one batch (dict of backend tensors);
        a stage whose prediction is points, (B, 41, 3) metres, returns them as 'points'."""
        raise NotImplementedError

    def _train_forward(self, batch, training):
        out = self._forward(batch, training)
        values = {k: v for k, v in out.items() if k.startswith("loss")}
        if "points" in out:
            points = ops.convert_to_tensor(batch["points"], "float32")
            values["error_all_mm"] = 1000.0 * ops.mean(ops.norm(out["points"] - points, axis=-1))
        return values

    def train_step(self, batch):
        return self.steps_impl.train(batch)

    def _val_forward(self, batch, training):
        out = self._forward(batch, training=training)
        if "points" not in out:
            out["points"] = self._body_points(batch, out)
        keep = ("loss", "points", "shape", "pose")
        return {k: v for k, v in out.items() if k in keep or k.startswith("loss_")}

    def _body_points(self, batch, out):
        """The 41 points (B, 41, 3) of the SMPL body built from a prediction, for validation."""
        raise NotImplementedError

    def validate(self, epoch, step):
        meter, input_meter = PointErrorMeter(), PointErrorMeter()
        sums, weight, angles, shape_l1 = {}, 0, [], []
        for batch in self.val_batches:
            out = {k: np.asarray(ops.convert_to_numpy(v)) for k, v in self.steps_impl.evaluate(batch).items()}
            truth = {k: np.asarray(batch[k]) for k in ("points", "noisy_points", "rotations", "shape")}
            n = int(truth["points"].shape[0])
            weight += n
            for key, value in out.items():
                if key.startswith("loss"):
                    sums[key] = sums.get(key, 0.0) + float(value) * n
            meter.update(out["points"], truth["points"])
            input_meter.update(truth["noisy_points"], truth["points"])
            if "pose" in out:
                angles.append(rotation_errors_deg(out["pose"].reshape(-1, 24, 3, 3), truth["rotations"]))
            if "shape" in out:
                shape_l1.append(np.abs(out["shape"] - truth["shape"]).mean(axis=1))
        metrics = {key: value / weight for key, value in sums.items()}
        errors = meter.summary()
        metrics.update(error_joints_mm=errors["joints"], error_landmarks_mm=errors["landmarks"],
                       error_all_mm=errors["all"], input_error_all_mm=input_meter.summary()["all"])
        if angles:
            metrics["rotation_error_deg"] = float(np.concatenate(angles).mean())
        if shape_l1:
            metrics["shape_l1"] = float(np.concatenate(shape_l1).mean())
        metrics["score"] = metrics["loss"]
        return metrics

    def summary_fields(self):
        return self.summary_metrics


class DAEStage(SMPLRStage):
    """``dae``: noisy points -> DAE -> L1 to the clean points."""
    kind = "dae"
    finetune_kinds = ("dae",)
    summary_metrics = ("loss", "input_error_all_mm", "error_all_mm")

    def needs_body_model(self) -> bool:
        return self.body_source == "model"

    def build_nets(self) -> List[keras.Model]:
        self.dae = DAE(dropout_rate=self.config.model.dae_dropout)
        self.dae(np.zeros((1, 3 * NUM_POINTS), np.float32))  # creates the variables
        return [self.dae]

    def model_objects(self):
        return {"dae": self.dae}

    def _forward(self, batch, training):
        noisy = ops.convert_to_tensor(batch["noisy_points"], "float32")
        cleaned = self.dae(ops.reshape(noisy, (-1, 3 * NUM_POINTS)), training=training)
        return {"points": ops.reshape(cleaned, (-1, NUM_POINTS, 3)),
                "loss": dae_loss(cleaned, ops.convert_to_tensor(batch["points"], "float32"))}


class SMPLRNetsStage(SMPLRStage):
    """The stages of SMPLR's two regressors (shape net, pose net) and its SMPL layer."""

    def build_nets(self) -> List[keras.Model]:
        self.smplr = SMPLR(self.smpl_layer)
        self.smplr.shape_net(np.zeros((1, NUM_POINTS), np.float32))  # creates the variables
        self.smplr.pose_net(np.zeros((1, 3 * NUM_POINTS), np.float32))
        self.template = np.asarray(self.smplr.bone_template, np.float32)
        return list(self.model_objects().values())

    def _smpl_points(self, rotations, shape):
        """The 41 points (B, 41, 3) of SMPL posed with ``rotations`` (B, 24, 3, 3) and shaped by ``shape`` (B, 11)."""
        vertices, joints = self.smpl_layer(rotations, shape)
        return self.smpl_layer.points41(vertices, joints)


class ShapeStage(SMPLRNetsStage):
    """``shape``: bone features of the noisy points -> ShapeNet -> L1 + 0.01 mean|shape|; validated
    through SMPL with the ground-truth pose."""
    kind = "shape"
    finetune_kinds = ("shape", "shapepose")
    summary_metrics = ("loss", "shape_l1", "error_all_mm")

    def model_objects(self):
        return {"shape_net": self.smplr.shape_net}

    def _forward(self, batch, training):
        noisy = ops.convert_to_tensor(batch["noisy_points"], "float32")
        shape = self.smplr.shape_net(kinematics.bone_features(noisy, self.template), training=training)
        return {"shape": shape, "loss": shape_loss(shape, batch["shape"])}

    def _body_points(self, batch, out):
        return self._smpl_points(batch["rotations"], out["shape"])


class PoseStage(SMPLRNetsStage):
    """``pose``: bone directions of the noisy points -> PoseNet -> L1 on the matrices; validated
    through SMPL, posed with the nearest rotations, with the ground-truth shape."""
    kind = "pose"
    finetune_kinds = ("pose", "shapepose")
    summary_metrics = ("loss", "rotation_error_deg", "error_all_mm")

    def model_objects(self):
        return {"pose_net": self.smplr.pose_net}

    def _forward(self, batch, training):
        noisy = ops.convert_to_tensor(batch["noisy_points"], "float32")
        pose = self.smplr.pose_net(kinematics.normal_features(noisy), training=training)
        return {"pose": pose, "loss": pose_loss(pose, batch["rotations"])}

    def _body_points(self, batch, out):
        # The same projection as SMPLR at inference: SMPL posed with valid rotations.
        rotations = nearest_rotation(ops.reshape(out["pose"], (-1, kinematics.NUM_JOINTS, 3, 3)))
        return self._smpl_points(rotations, batch["shape"])


class ShapePoseStage(SMPLRNetsStage):
    """``shapepose``: both nets -> SMPL layer -> L1 pose + shape + SMPL joints + landmarks,
    starting from the shape and pose checkpoints (``--finetune SHAPE POSE``) or one shapepose one."""
    kind = "shapepose"
    finetune_kinds = ("shapepose",)
    summary_metrics = ("loss", "shape_l1", "rotation_error_deg", "error_joints_mm", "error_landmarks_mm",
                       "error_all_mm")

    def model_objects(self):
        return {"shape_net": self.smplr.shape_net, "pose_net": self.smplr.pose_net}

    def finetune(self):
        if not self.config.run.finetune:
            print("shapepose: no --finetune checkpoints, training both nets from scratch")
        super().finetune()

    def load_finetune(self, names: List[str]) -> None:
        if len(names) != 2:
            return super().load_finetune(names)
        tmp = self.config.run.tmp
        load_named(tmp, names[0], {"shape_net": self.smplr.shape_net}, kinds=("shape", "shapepose"),
                   purpose="fine-tune the shape net from")
        load_named(tmp, names[1], {"pose_net": self.smplr.pose_net}, kinds=("pose", "shapepose"),
                   purpose="fine-tune the pose net from")

    def _forward(self, batch, training):
        predicted = self.smplr(ops.convert_to_tensor(batch["noisy_points"], "float32"), training=training)
        terms = shapepose_loss(predicted, batch["shape"], batch["rotations"],
                               ops.convert_to_tensor(batch["points"], "float32"))
        out = dict(predicted)
        out.update({f"loss_{k}": v for k, v in terms.items() if k != "loss"}, loss=terms["loss"])
        return out


#: The class of each SMPLR stage kind.
STAGE_CLASSES = {stage.kind: stage for stage in (DAEStage, ShapeStage, PoseStage, ShapePoseStage)}


def train(config: StageConfig) -> Optional[dict]:
    """Train the DAE / shape / pose / shapepose stage described by ``config``."""
    resume_state = prepare(config)  # name checks first: nothing is built for a refused run
    return run(STAGE_CLASSES[config.kind](config), resume_state)
