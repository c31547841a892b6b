"""The SMPL body model: loading model files, the SMPL Keras layer, the SMPLR tree.

Public API: `load_model`, `find_models`, `SMPLModel`, `SMPL` (and its named
outputs `Body`), `rodrigues`,
`smpl.constants` (sizes and trees, NumPy only) and `smpl.kinematics`
(42-node tree, bone template, SMPLR features).

Importing `smpl` or `smpl.constants` does not import Keras: `SMPL`,
`rodrigues` and `kinematics` are loaded on first use, so
`from smpl.constants import NUM_POINTS` stays cheap and backend-free.
"""
import importlib

from . import constants
from .io import SMPLModel, SMPLModelError, find_models, load_model, save_npz

__all__ = ["Body", "SMPL", "SMPLModel", "SMPLModelError", "constants", "find_models", "kinematics", "load_model",
           "rodrigues", "save_npz"]

_LAZY = {"Body": "layer", "SMPL": "layer", "rodrigues": "layer", "kinematics": None, "layer": None}


def __getattr__(name):
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name] or name}", __name__)
        return module if _LAZY[name] is None else getattr(module, name)
    raise AttributeError(f"module 'smpl' has no attribute {name!r}")
