"""The SMPLR training loop for the stages that read points, not images (SPEC "DAE", "SMPLR").

Inputs are the ground-truth 41 points of the data list (plus ``--synthetic``
bodies) with the SPEC input noise (uniform(-0.5, 0.5) * 2 sigma), targets
the clean points, rotations and shape. One kind of step per stage, compiled by
``training.steps`` (``tf.function`` on TensorFlow, ``jax.jit`` on JAX), with Adam:

- ``dae``:       noisy points -> DAE -> L1 to the clean points.
- ``shape``:     bone features of the noisy points -> ShapeNet -> L1 + 0.01 mean|shape|.
- ``pose``:      bone directions of the noisy points -> PoseNet -> L1 on the matrices.
- ``shapepose``: both nets -> SMPL layer -> L1 pose + shape + SMPL joints + landmarks,
  starting from the shape and pose checkpoints (``--finetune SHAPE POSE``).

Validation (the val list, with a fixed draw of the same noise, so epochs are
comparable): the stage's loss (best checkpoint = lowest, as the original), and
errors in mm: DAE output for ``dae``; for the others the SMPL body built from
the prediction, with the ground-truth pose for ``shape`` and the ground-truth
shape for ``pose`` (as the original); mean per-joint rotation error in degrees.
"""
from pathlib import Path

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
from training.metrics import PointErrorMeter, rotation_errors_deg
from training.runner import Stage, prepare, run, set_seeds
from training.schedules import smplr_steps
from training.skeleton_bodies import skeleton_arrays
from training.steps import backend, make_steps
from training.synthetic_bodies import synthetic_arrays

NUM_POINTS = kinematics.NUM_POINTS


def load_body_model(smpl_dir=None):
    """The SMPL layer of ``--smpl-dir`` (or ``smpl.find_models``' default choice)."""
    try:
        female, male = smpl.find_models(smpl_dir)
        return smpl.SMPL(female, male)
    except (FileNotFoundError, ValueError) as error:
        raise TrainingError(str(error)) from None


def synthetic_body_source(config):
    """"model" or "skeleton": where this stage's ``--synthetic`` bodies come from.

    ``auto`` re-poses the training subjects' skeletons for the dae and pose
    stages when the body model is the open default body (whose skeleton is
    not SMPL's, see ``training.skeleton_bodies``), and uses the body model
    otherwise; shape and shapepose need betas, so always the model.
    """
    if config.synthetic_bodies != "auto":
        return config.synthetic_bodies
    if config.kind in ("shape", "shapepose"):
        return "model"
    try:
        female, male = smpl.find_models(config.smpl_dir)
    except FileNotFoundError:
        return "skeleton"
    open_body = {Path(p).resolve() for p in OPEN_BODY_FILES.values()}
    return "skeleton" if {Path(female).resolve(), Path(male).resolve()} <= open_body else "model"


class SMPLRStage(Stage):
    """Model parts, optimiser, data and steps of one DAE / shape / pose / shapepose run."""

    def __init__(self, config):
        self.config = config
        self.kind = kind = config.kind
        set_seeds(config.seed)
        self.train_arrays = DataReader.SMPLRArrays.from_list(config.data, config.data / config.train_list,
                                                             progress=True)
        self.val_arrays = DataReader.SMPLRArrays.from_list(config.data, config.data / config.val_list)
        self.body_source = synthetic_body_source(config) if config.synthetic else None
        needs_model = kind != "dae" or self.body_source == "model"
        self.smpl_layer = load_body_model(config.smpl_dir) if needs_model else None
        if self.body_source == "model":
            extra = synthetic_arrays(self.smpl_layer, config.synthetic, seed=config.seed)
        elif self.body_source == "skeleton":
            if self.smpl_layer is not None:  # the pose stage has the models loaded already
                models = (self.smpl_layer.female, self.smpl_layer.male)
            else:
                models = [smpl.load_model(path) for path in smpl.find_models(config.smpl_dir)]
            extra = skeleton_arrays(self.train_arrays, config.synthetic, seed=config.seed, models=models)
        if config.synthetic:
            self.train_arrays = self.train_arrays.concatenate(extra)
        self.num_train = len(self.train_arrays)

        if kind == "dae":
            self.dae = DAE(dropout_rate=config.dae_dropout)
            self.dae(np.zeros((1, 3 * NUM_POINTS), np.float32))  # creates the variables
            self.trained = [self.dae]
        else:
            self.smplr = SMPLR(self.smpl_layer)
            self.smplr.shape_net(np.zeros((1, NUM_POINTS), np.float32))  # creates the variables
            self.smplr.pose_net(np.zeros((1, 3 * NUM_POINTS), np.float32))
            self.template = np.asarray(self.smplr.bone_template, np.float32)
            self.trained = {"shape": [self.smplr.shape_net], "pose": [self.smplr.pose_net],
                            "shapepose": [self.smplr.shape_net, self.smplr.pose_net]}[kind]
        self.variables = [v for model in self.trained for v in model.trainable_variables]
        self.optimizer = keras.optimizers.Adam(learning_rate=config.lr0)
        self.optimizer.build(self.variables)

        noise = config.augmentation == 1
        batch_arrays = self.train_arrays
        if self.num_train < config.batch_size:
            # A list smaller than one batch: repeat it so that batches are full
            # (every copy draws its own noise).
            copies = -(-config.batch_size // self.num_train)
            batch_arrays = batch_arrays.concatenate(*([batch_arrays] * (copies - 1)))
        # tf.data on TensorFlow, the NumPy twin elsewhere (same arrays, same noise model).
        batches = DataReader.smplr_dataset if backend() == "tensorflow" else DataReader.smplr_batches
        self.train_data = batches(batch_arrays, config.batch_size, training=True, noise=noise, seed=config.seed)
        # One fixed draw of validation noise, kept in memory: every epoch sees the same inputs.
        val = batches(self.val_arrays, config.batch_size, training=False, noise=noise, seed=config.seed + 1)
        self.val_batches = []
        for batch in val:
            if config.val_steps is not None and len(self.val_batches) >= config.val_steps:
                break
            self.val_batches.append(batch)
        if not self.val_batches:
            raise TrainingError(f"{config.data / config.val_list}: no validation samples")
        params = sum(int(np.prod(v.shape)) for v in self.variables)
        source = f", {self.body_source} bodies" if self.body_source else ""
        print(f"{kind}: {params / 1e6:.2f} M trainable parameters, {self.num_train} training "
              f"({config.synthetic} synthetic{source}) / {len(self.val_arrays)} validation samples, "
              f"batch {config.batch_size}, input noise {'on' if noise else 'off'}")
        self._train_iterator = None
        self.steps_impl = make_steps(self.trained, self.optimizer, self._train_forward, self._val_forward)

    # ------------------------------------------------------------------ parts
    def model_objects(self):
        if self.kind == "dae":
            return {"dae": self.dae}
        objects = {"shape": {"shape_net": self.smplr.shape_net}, "pose": {"pose_net": self.smplr.pose_net},
                   "shapepose": {"shape_net": self.smplr.shape_net, "pose_net": self.smplr.pose_net}}
        return objects[self.kind]

    def finetune(self):
        names = list(self.config.finetune)
        tmp = self.config.tmp
        if not names:
            if self.kind == "shapepose":
                print("shapepose: no --finetune checkpoints, training both nets from scratch")
            return
        if self.kind == "shapepose":
            if len(names) == 2:
                load_named(tmp, names[0], {"shape_net": self.smplr.shape_net}, kinds=("shape", "shapepose"),
                           purpose="fine-tune the shape net from")
                load_named(tmp, names[1], {"pose_net": self.smplr.pose_net}, kinds=("pose", "shapepose"),
                           purpose="fine-tune the pose net from")
            else:
                load_named(tmp, names[0], self.model_objects(), kinds=("shapepose",), purpose="fine-tune from")
        else:
            if len(names) != 1:
                raise TrainingError(f"{self.kind} --finetune takes one checkpoint name, got {names}")
            kinds = {"dae": ("dae",), "shape": ("shape", "shapepose"), "pose": ("pose", "shapepose")}[self.kind]
            load_named(tmp, names[0], self.model_objects(), kinds=kinds, purpose="fine-tune from")
        self.steps_impl.reload()
        print(f"{self.kind}: starting from checkpoint{'s' if len(names) > 1 else ''} {', '.join(names)}")

    def steps(self, epoch):
        if self.config.steps is not None:
            return self.config.steps
        return smplr_steps(self.num_train, self.config.batch_size, self.config.max_steps or 400)

    def train_batches(self, epoch):
        # One endless iterator for the whole run (reshuffled, fresh noise every pass).
        if self._train_iterator is None:
            data = self.train_data
            self._train_iterator = iter(data.repeat() if backend() == "tensorflow" else data.batches())
        return self._train_iterator

    # ------------------------------------------------------------------ steps
    def _forward(self, batch, training):
        """Predictions and loss terms of one batch (dict of backend tensors)."""
        noisy = ops.convert_to_tensor(batch["noisy_points"], "float32")
        points = ops.convert_to_tensor(batch["points"], "float32")
        out = {}
        if self.kind == "dae":
            cleaned = self.dae(ops.reshape(noisy, (-1, 3 * NUM_POINTS)), training=training)
            out["points"] = ops.reshape(cleaned, (-1, NUM_POINTS, 3))
            out["loss"] = dae_loss(cleaned, points)
        elif self.kind == "shape":
            out["shape"] = self.smplr.shape_net(kinematics.bone_features(noisy, self.template), training=training)
            out["loss"] = shape_loss(out["shape"], batch["shape"])
        elif self.kind == "pose":
            out["pose"] = self.smplr.pose_net(kinematics.normal_features(noisy), training=training)
            out["loss"] = pose_loss(out["pose"], batch["rotations"])
        else:
            predicted = self.smplr(noisy, training=training)
            terms = shapepose_loss(predicted, batch["shape"], batch["rotations"], points)
            out.update(predicted)
            out.update({f"loss_{k}": v for k, v in terms.items() if k != "loss"}, loss=terms["loss"])
        return out

    def _train_forward(self, batch, training):
        out = self._forward(batch, training)
        values = {k: v for k, v in out.items() if k.startswith("loss")}
        if self.kind in ("dae", "shapepose"):
            points = ops.convert_to_tensor(batch["points"], "float32")
            values["error_all_mm"] = 1000.0 * ops.mean(ops.norm(out["points"] - points, axis=-1))
        return values

    def train_step(self, batch):
        return self.steps_impl.train(batch)

    def _val_forward(self, batch, training):
        out = self._forward(batch, training=training)
        if self.kind == "shape":
            vertices, joints = self.smpl_layer(batch["rotations"], out["shape"])
            out["points"] = self.smpl_layer.points41(vertices, joints)
        elif self.kind == "pose":
            # The same projection as SMPLR at inference: SMPL posed with valid rotations.
            rotations = nearest_rotation(ops.reshape(out["pose"], (-1, kinematics.NUM_JOINTS, 3, 3)))
            vertices, joints = self.smpl_layer(rotations, batch["shape"])
            out["points"] = self.smpl_layer.points41(vertices, joints)
        keep = ("loss", "points", "shape", "pose")
        return {k: v for k, v in out.items() if k in keep or k.startswith("loss_")}

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
        fields = {"dae": ("loss", "input_error_all_mm", "error_all_mm"),
                  "shape": ("loss", "shape_l1", "error_all_mm"),
                  "pose": ("loss", "rotation_error_deg", "error_all_mm"),
                  "shapepose": ("loss", "shape_l1", "rotation_error_deg", "error_joints_mm",
                                "error_landmarks_mm", "error_all_mm")}
        return fields[self.kind]


def train(config):
    """Train the DAE / shape / pose / shapepose stage described by ``config``."""
    resume_state = prepare(config)  # name checks first: nothing is built for a refused run
    return run(SMPLRStage(config), resume_state)
