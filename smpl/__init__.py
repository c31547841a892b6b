"""The SMPL body model: loading model files, the SMPL Keras layer, the SMPLR tree.

Public API: `load_model`, `find_models`, `SMPLModel`, `SMPL`, `rodrigues`, and
`smpl.kinematics` (42-node tree, bone template, SMPLR features).
"""
from . import kinematics
from .io import SMPLModel, SMPLModelError, find_models, load_model, save_npz
from .layer import SMPL, rodrigues

__all__ = ["SMPL", "SMPLModel", "SMPLModelError", "find_models", "kinematics", "load_model",
           "rodrigues", "save_npz"]
