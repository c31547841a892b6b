"""Files -> tensors: CLOTH3D-format reading, the f * 2.5 / z_root crop,
consistent augmentation and the tf.data pipelines.

Importing this package does not import TensorFlow; `shn_dataset` and
`smplr_dataset` (in `DataReader.pipelines`) load it when first used.
`shn_batches` and `smplr_batches` (in `DataReader.loader`) are their
TensorFlow-free twins (NumPy batches, worker processes), for Keras on JAX.

Public API:
    CLOTH3DReader(frames_root).load("SEQ/NNNN.png") -> dict of NumPy arrays
    SMPLRArrays.from_list(frames_root, list_file), .concatenate(...)
    shn_dataset(frames_root, list_file, batch_size, training, augmentation=1, seed=None,
                voc_dir=None, occluder_dir=None, flip=False)
    smplr_dataset(arrays, batch_size, training, noise=None, seed=None, error_bank=None)
    shn_batches(frames_root, list_file, batch_size, training, ..., workers=None) -> SHNBatchLoader
    smplr_batches(arrays, batch_size, training, noise=None, seed=None, error_bank=None) -> SMPLRBatchLoader
    NOISE_SIGMA (123,), add_point_noise(points, uniform_draw), load_error_bank(path) -> (N, 41, 3)
    CLOTH3DError, EmptyMaskError
"""
from .augment import NOISE_SIGMA, FrameAugmenter, add_point_noise, load_error_bank
from .cloth3d import CLOTH3DError, CLOTH3DReader, EmptyMaskError, SMPLRArrays, read_list

__all__ = ["CLOTH3DError", "CLOTH3DReader", "EmptyMaskError", "FrameAugmenter", "NOISE_SIGMA",
           "SHNBatchLoader", "SMPLRArrays", "SMPLRBatchLoader", "add_point_noise", "load_error_bank", "read_list",
           "shn_batches", "shn_dataset", "smplr_batches", "smplr_dataset"]

_LAZY = {"shn_dataset": "pipelines", "smplr_dataset": "pipelines",  # these import TensorFlow
         "shn_batches": "loader", "smplr_batches": "loader", "SHNBatchLoader": "loader",
         "SMPLRBatchLoader": "loader"}


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'DataReader' has no attribute {name!r}")
