#!/usr/bin/env python
"""Evaluate trained checkpoints together (the original's ``test.py``):

    python test.py GPU_ID SHN DAE SMPLR [--data DIR] [--list val.txt] [--tmp DIR] [--overwrite]

image -> SHN -> soft-argmax -> DAE -> SMPLR -> SMPL; prints the SHN and SMPLR
errors in mm and the per-group errors, writes tmp/results/SMPLR/. See
``training.evaluate`` (``python test.py --help`` for every option).
"""
import sys

from training.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
