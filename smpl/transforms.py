"""Rotation and kinematic-chain maths, written once for NumPy and for `keras.ops`.

Each function takes the array module as `xp`: `numpy` (the default; float64
arrays for evaluation and data preparation) or `keras.ops` (float32 backend
tensors inside models and the SMPL layer, on TensorFlow or JAX). Both spell
the calls used here alike (`xp.linalg.svd`, `xp.linalg.det`, `xp.matmul`,
`xp.stack`, `xp.unstack`). This module imports neither Keras nor TensorFlow.
"""
from typing import Any, Sequence

import numpy as np


def nearest_rotation(matrices: Any, xp: Any = np) -> Any:
    """The rotation nearest (Frobenius) to each 3x3 matrix: (..., 3, 3) -> (..., 3, 3).

    R = U diag(1, 1, det(U V^T)) V^T from the SVD M = U S V^T, so a reflection
    never comes out. The pose net's tanh outputs are only roughly rotations;
    SMPL posed with them stretches every bone down the chain. With `xp=numpy`
    the result is float64, with `xp=keras.ops` a float32 backend tensor.
    """
    if xp is np:
        matrices = np.asarray(matrices, dtype=np.float64)
    else:
        matrices = xp.convert_to_tensor(matrices, dtype="float32")
    u, _, vt = xp.linalg.svd(matrices)
    det = xp.linalg.det(xp.matmul(u, vt))
    ones = xp.ones_like(det)
    fix = xp.stack([ones, ones, det], axis=-1)[..., None, :]  # scales U's last column
    return xp.matmul(u * fix, vt)


def along_chain(local: Any, parents: Sequence[int], xp: Any = np) -> Any:
    """World transforms (N, J, k, k) from parent-relative ones (N, J, k, k) on a kinematic tree.

    W[0] = L[0] and W[j] = W[parents[j]] @ L[j]; `parents` holds J ints with
    parents[j] < j (-1 for the root). k = 3 composes rotations, k = 4
    homogeneous rigid transforms (translations in metres). The chain is
    unrolled in Python (at trace time inside a compiled function).
    """
    local = xp.unstack(local, axis=1)
    world = [local[0]]
    for joint in range(1, len(parents)):
        world.append(xp.matmul(world[int(parents[joint])], local[joint]))
    return xp.stack(world, axis=1)
