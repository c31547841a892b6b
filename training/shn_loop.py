"""The SHN training loop (SPEC "SHN"): images -> voxel heatmaps of 41 points + 4 limbs.

Per step (one ``tf.function``): SHN logits of every stack -> ``VoxelHeatmapLoss``
(sum over stacks of the mean sigmoid cross-entropy) -> Adam. Batch-norm moving
statistics update in the forward pass with ``training=True``. With
``--mixed-precision`` the network runs in float16 while the heatmap read-out
and the loss stay float32 (the SHN casts its logits), with loss scaling.

Validation: soft-argmax of the last stack's logits; errors in mm (joints,
landmarks, all); the best checkpoint is the one with the lowest mean error
over all 41 points, as the original.
"""
import numpy as np
import tensorflow as tf
import keras

import DataReader
from models import SHN, VoxelHeatmapLoss, soft_argmax
from smpl import kinematics
from training import TrainingError
from training.checkpoints import load_named
from training.metrics import PointErrorMeter
from training.runner import Stage, prepare, run, set_seeds
from training.schedules import shn_steps
from training.summaries import skeleton_overlays


class SHNStage(Stage):
    """SHN model, optimiser, data and steps of one run (see module docstring)."""

    def __init__(self, config):
        self.config = config
        set_seeds(config.seed)
        augmentation = config.augmentation
        if augmentation is None:
            augmentation = 3 if config.voc is not None else 1
            if config.voc is None:
                print("SHN augmentation: 1 (standard); give --voc DIR for the original's mode 3 "
                      "(standard + Pascal VOC occlusion)")
        self.augmentation = augmentation
        self.train_data = DataReader.shn_dataset(
            config.data, config.data / config.train_list, config.batch_size, training=True,
            augmentation=augmentation, seed=config.seed, voc_dir=config.voc)
        self.val_data = DataReader.shn_dataset(
            config.data, config.data / config.val_list, config.batch_size, training=False)
        self.num_train = len(self.train_data.loader)
        self.num_val = len(self.val_data.loader)
        if self.num_train < config.batch_size:
            raise TrainingError(f"{config.data / config.train_list}: {self.num_train} frames, fewer than "
                                f"one batch of {config.batch_size} (lower --batch-size)")
        self.num_batches = self.num_train // config.batch_size

        self.model = SHN(num_stacks=config.num_stacks, num_features=config.num_features)
        self.model(tf.zeros((1, 256, 256, 3)))  # creates the variables
        self.loss = VoxelHeatmapLoss()
        optimizer = keras.optimizers.Adam(learning_rate=config.lr0)
        if config.mixed_precision:
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(self.model.trainable_variables)
        self.optimizer = optimizer
        print(f"SHN: {self.model.count_params() / 1e6:.1f} M parameters, {config.num_stacks} stacks, "
              f"{self.num_train} training / {self.num_val} validation frames, batch {config.batch_size}, "
              f"augmentation {augmentation}")
        self._train_iterator = None
        self._train_step = tf.function(self._train_step_eager, reduce_retracing=True)
        self._val_step = tf.function(self._val_step_eager, reduce_retracing=True)

    # ------------------------------------------------------------------ parts
    def model_objects(self):
        return {"shn": self.model}

    def finetune(self):
        if not self.config.finetune:
            return
        if len(self.config.finetune) != 1:
            raise TrainingError(f"shn --finetune takes one checkpoint name, got {list(self.config.finetune)}")
        name = self.config.finetune[0]
        load_named(self.config.tmp, name, {"shn": self.model}, kinds=("shn",), purpose="fine-tune from")
        print(f"SHN: starting from checkpoint {name!r}")

    def steps(self, epoch):
        if self.config.steps is not None:
            return self.config.steps
        return shn_steps(epoch, self.num_batches, self.config.steps_growth or 500, self.config.max_steps)

    def train_batches(self, epoch):
        # One endless iterator for the whole run: epochs take their steps from
        # it, and the list is reshuffled and re-augmented on every pass.
        if self._train_iterator is None:
            self._train_iterator = iter(self.train_data.repeat())
        return self._train_iterator

    # ------------------------------------------------------------------ steps
    def _train_step_eager(self, images, points):
        with tf.GradientTape() as tape:
            logits = self.model(images, training=True)
            total, per_stack = self.loss(logits, points)
            scaled = self.optimizer.scale_loss(total) if self.config.mixed_precision else total
        variables = self.model.trainable_variables
        gradients = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(gradients, variables))
        predicted = soft_argmax(logits[-1], num_points=kinematics.NUM_POINTS)
        error = tf.reduce_mean(tf.norm(predicted - points, axis=-1)) * 1000.0
        return total, per_stack, error

    def train_step(self, batch):
        total, per_stack, error = self._train_step(batch["image"], batch["points"])
        values = {"loss": float(total), "error_all_mm": float(error)}
        for s, value in enumerate(np.asarray(per_stack)):
            values[f"loss_stack_{s + 1}"] = float(value)
        return values

    def _val_step_eager(self, images, points):
        logits = self.model(images, training=False)
        total, _ = self.loss(logits, points)
        return total, soft_argmax(logits[-1], num_points=kinematics.NUM_POINTS)

    def validate(self, epoch, step):
        meter = PointErrorMeter()
        losses, first = [], None
        for k, batch in enumerate(self.val_data):
            if self.config.val_steps is not None and k >= self.config.val_steps:
                break
            loss, predicted = self._val_step(batch["image"], batch["points"])
            losses.append(float(loss))
            meter.update(predicted.numpy(), batch["points"].numpy())
            if first is None:
                first = (batch, predicted.numpy())
        if meter.count == 0:
            raise TrainingError(f"{self.config.data / self.config.val_list}: no validation batch "
                                f"(fewer frames than --batch-size {self.config.batch_size}?)")
        if first is not None and self.config.log_images > 0:
            batch, predicted = first
            overlay = skeleton_overlays(batch["image"].numpy(), predicted, batch["points"].numpy(),
                                        batch["root_camera"].numpy(), kinematics.PARENTS,
                                        max_images=self.config.log_images)
            self.logger.images("val/skeleton_pred_red_true_green", overlay, step)
        errors = meter.summary()
        return {"loss": float(np.mean(losses)), "error_joints_mm": errors["joints"],
                "error_landmarks_mm": errors["landmarks"], "error_all_mm": errors["all"],
                "score": errors["all"]}

    def summary_fields(self):
        return ("loss", "error_joints_mm", "error_landmarks_mm", "error_all_mm")


def train(config):
    """Train the SHN stage described by ``config`` (a resolved StageConfig)."""
    resume_state = prepare(config)  # name checks first: nothing is built for a refused run
    return run(SHNStage(config), resume_state)
