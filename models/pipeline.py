"""The whole SMPLR pipeline for inference: image -> SHN -> soft-argmax -> DAE -> SMPLR -> SMPL."""
import keras
from keras import ops

from .flip import shn_points as read_shn_points


class Pipeline(keras.Model):
    """images (B, 256, 256, 3), standardised crops -> dict of points and the SMPL body.

    Chains the trained stages: the last SHN stack's heatmaps are read out by
    soft-argmax on the SHN's grid axes (`shn.grid_axes`) and turned back to
    world axes, cleaned by the DAE, and turned into SMPL by SMPLR.
    Outputs: 'shn_points' (B, 41, 3), 'dae_points' (B, 41, 3) (metres,
    root-relative) plus every output of `SMPLR` ('shape', 'pose', 'rotations',
    'joints', 'vertices', 'points').

    `flip_test` (``--flip-test``): the SHN's points are averaged over the crop
    and its left-right mirror image (`models.flip.shn_points`; the SHN runs
    on 2B images); `call` then needs root_camera (B, 3), the root in the
    camera in metres.
    """

    def __init__(self, shn, dae, smplr, flip_test=False, **kwargs):
        super().__init__(**kwargs)
        if dae.num_points != shn.num_points:
            raise ValueError(f"Pipeline: SHN predicts {shn.num_points} points but the DAE expects {dae.num_points}")
        self.shn, self.dae, self.smplr, self.flip_test = shn, dae, smplr, bool(flip_test)

    def call(self, images, root_camera=None, training=False):
        shn_points = read_shn_points(self.shn, images, root_camera, self.flip_test, training=training)
        flat = ops.reshape(shn_points, (-1, 3 * self.shn.num_points))
        dae_points = ops.reshape(self.dae(flat, training=training), (-1, self.shn.num_points, 3))
        return {"shn_points": shn_points, "dae_points": dae_points, **self.smplr(dae_points, training=training)}
