"""Per-epoch learning rate and number of steps (SPEC "SHN" and "SMPLR").

Both stages of the original use the same decaying sigmoid, only centred at a
different epoch:

    lr(epoch) = lr0 * (1 - 1 / (1 + exp(centre - epoch / width))) + floor

with width 12.5 and floor 1e-4; centre = 10 for the SHN (lr halves around
epoch 125) and centre = 4 for the SMPLR stages (around epoch 50).
"""
import math
from typing import Optional

#: Centre of the sigmoid, in units of ``epoch / width`` (SPEC).
SHN_LR_CENTRE = 10.0
SMPLR_LR_CENTRE = 4.0
LR_WIDTH = 12.5
LR_FLOOR = 1e-4


def learning_rate(epoch: int, lr0: float, centre: float, width: float = LR_WIDTH, floor: float = LR_FLOOR) -> float:
    """Learning rate (float) of 0-based ``epoch``.

    >>> round(learning_rate(0, 0.01, 10.0), 8)   # SHN, first epoch
    0.01009995
    """
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    return lr0 * (1.0 - 1.0 / (1.0 + math.exp(centre - epoch / width))) + floor


def shn_steps(epoch: int, num_batches: int, growth: int = 500, cap: Optional[int] = None) -> int:
    """SHN steps in 0-based ``epoch``: min(growth * (epoch + 1), batches in the list).

    ``cap`` (e.g. ``--quick``'s) bounds it further; the result is at least 1.
    """
    steps = min(growth * (epoch + 1), num_batches)
    if cap is not None:
        steps = min(steps, cap)
    return max(1, int(steps))


def smplr_steps(num_samples: int, batch_size: int, cap: int = 400) -> int:
    """SMPLR batches per epoch: min(cap, floor(samples / batch)), at least 1.

    A list smaller than one batch still gives one (the input pipeline repeats
    samples to fill it).
    """
    return max(1, min(int(cap), num_samples // batch_size))
