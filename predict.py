#!/usr/bin/env python
"""A body mesh from any image of a person:

    python predict.py GPU_ID INPUT... [--out DIR] [--checkpoints SHN DAE SMPLR]
                      [--bbox X Y W H] [--mask FILE] [--focal PX]

INPUT: image files (PNG, JPEG) or folders of them. Writes NAME.obj, NAME.npz,
NAME.json and NAME_overlay.png per image in --out (default tmp/predictions).
See ``training.predict`` (``python predict.py --help`` for every option).
"""
import sys

from training.predict import main

if __name__ == "__main__":
    sys.exit(main())
