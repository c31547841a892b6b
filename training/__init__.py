"""Training and evaluation of the SMPLR stages (SPEC "SHN", "DAE", "SMPLR").

One module per idea, and nothing here imports TensorFlow at package import
time, so that :mod:`training.device` can choose the visible GPU before
TensorFlow starts:

- ``device``       GPU_ID -> CUDA_VISIBLE_DEVICES, memory growth, mixed precision
- ``distribute``   data-parallel training over a GPU_ID list (``0,1,2,3``)
- ``steps``        compiled train / evaluate steps, one implementation per backend
- ``config``       stage settings with the SPEC defaults, ``--quick`` scaling
- ``schedules``    per-epoch learning rate and steps per epoch
- ``checkpoints``  ``tmp/checkpoints/NAME/{best,latest}`` with atomic writes
- ``metrics``      errors in mm (joints, landmarks, all, SPEC groups), degrees
- ``summaries``    TensorBoard event files (scalars, images) and skeleton drawings
- ``runner``       the epoch driver shared by all stages (progress, validation,
                   checkpoints, resume)
- ``shn_loop``     the SHN stage: model, data, train / validation steps
- ``smplr_loop``   the DAE / shape / pose / shape+pose stages
- ``synthetic_bodies``  extra SMPLR training bodies from the body model (``--synthetic``)
- ``skeleton_bodies``   extra DAE / pose training bodies: the training subjects'
                        skeletons re-posed (``--synthetic-bodies skeleton``)
- ``evaluate``     image -> SHN -> DAE -> SMPLR -> SMPL evaluation (``test.py``)
- ``cli``          ``python -m training KIND GPU_ID ...``
"""

#: Kinds of stage, in the order of the original ``train_all.py``.
STAGE_KINDS = ("shn", "dae", "shape", "pose", "shapepose")


class TrainingError(Exception):
    """A user-facing problem (bad option, missing checkpoint, existing name).

    Command-line entry points print its message as one line and exit with
    status 2 instead of a traceback.
    """
