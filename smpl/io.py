"""Reading SMPL-format body models: the official pickles (without chumpy) and `.npz`.

The official SMPL files are licensed and never ship with this project; users
download them from https://smpl.is.tue.mpg.de and point `--smpl-dir` or
`SMPLR_SMPL_DIR` at them. Without them the project's own open body
(`smpl/models/open_body_{female,male}.npz`) is used.
"""
import dataclasses
import logging
import os
import pickle
from pathlib import Path
from typing import Optional, Union

import numpy as np
import scipy.sparse

from .constants import (NUM_BETAS, NUM_JOINTS, NUM_LANDMARKS, NUM_POSE_FEATURES, SMPL_LANDMARK_VERTEX_IDS,
                        SMPL_NUM_VERTICES)

log = logging.getLogger(__name__)

MODELS_DIR = Path(__file__).resolve().parent / "models"
OPEN_BODY_FILES = {"female": MODELS_DIR / "open_body_female.npz",
                   "male": MODELS_DIR / "open_body_male.npz"}
SMPL_DOWNLOAD = "https://smpl.is.tue.mpg.de (register, then download SMPL for Python)"

#: File names of official SMPL models, in the order they are looked for.
OFFICIAL_FILE_NAMES = {
    "female": ("basicModel_f_lbs_10_207_0_v1.0.0.pkl", "basicModel_f_lbs_10_207_0_v1.1.0.pkl",
               "SMPL_FEMALE.pkl", "SMPL_FEMALE.npz"),
    "male": ("basicmodel_m_lbs_10_207_0_v1.0.0.pkl", "basicModel_m_lbs_10_207_0_v1.1.0.pkl",
             "SMPL_MALE.pkl", "SMPL_MALE.npz"),
}


_told_open_body = False


class SMPLModelError(ValueError):
    """A file that is not a usable SMPL-format model."""


@dataclasses.dataclass
class SMPLModel:
    """One SMPL-format body model as NumPy arrays (metres).

    v_template (V,3) float32, shapedirs (V,3,10) float32, posedirs (V,3,207)
    float32, J_regressor (24,V) float32 (dense), weights (V,24) float32,
    parents (24,) int64 (-1 for the root), faces (F,3) int32,
    landmark_ids (18,) int64, gender 'female' | 'male' | 'neutral'.
    """
    v_template: np.ndarray
    shapedirs: np.ndarray
    posedirs: np.ndarray
    J_regressor: np.ndarray
    weights: np.ndarray
    parents: np.ndarray
    faces: np.ndarray
    landmark_ids: np.ndarray
    gender: str = "neutral"
    path: str = "<memory>"

    def __post_init__(self):
        self.v_template = np.asarray(self.v_template, np.float32)
        V = self.v_template.shape[0] if self.v_template.ndim == 2 else -1
        self.shapedirs = np.asarray(self.shapedirs, np.float32)
        if self.shapedirs.ndim == 3 and self.shapedirs.shape[2] > NUM_BETAS:
            self.shapedirs = self.shapedirs[:, :, :NUM_BETAS]  # e.g. v1.1's 300 components
        if self.posedirs is None:
            self.posedirs = np.zeros((V, 3, NUM_POSE_FEATURES), np.float32)
        self.posedirs = np.asarray(self.posedirs, np.float32)
        self.J_regressor = np.asarray(self.J_regressor, np.float32)
        self.weights = np.asarray(self.weights, np.float32)
        self.parents = np.asarray(self.parents, np.int64).reshape(-1)
        self.faces = np.asarray(self.faces, np.int64).astype(np.int32)
        self.landmark_ids = np.asarray(self.landmark_ids, np.int64).reshape(-1)
        self.gender = str(self.gender)
        self._validate(V)

    def _validate(self, V):
        expected = {
            "v_template": (V, 3), "shapedirs": (V, 3, NUM_BETAS),
            "posedirs": (V, 3, NUM_POSE_FEATURES), "J_regressor": (NUM_JOINTS, V),
            "weights": (V, NUM_JOINTS), "parents": (NUM_JOINTS,),
            "landmark_ids": (NUM_LANDMARKS,)}
        for name, shape in expected.items():
            actual = getattr(self, name).shape
            if V < 1 or actual != shape:
                raise SMPLModelError(f"{self.path}: '{name}' has shape {actual}, expected {shape}")
        if self.faces.ndim != 2 or self.faces.shape[1] != 3:
            raise SMPLModelError(f"{self.path}: 'faces' has shape {self.faces.shape}, expected (F, 3)")
        if self.faces.size and (self.faces.min() < 0 or self.faces.max() >= V):
            raise SMPLModelError(f"{self.path}: 'faces' index vertices outside 0..{V - 1}")
        if self.landmark_ids.min() < 0 or self.landmark_ids.max() >= V:
            raise SMPLModelError(f"{self.path}: 'landmark_ids' outside 0..{V - 1}")
        if self.parents[0] != -1 or np.any(self.parents[1:] >= np.arange(1, NUM_JOINTS)):
            raise SMPLModelError(f"{self.path}: 'parents' is not a tree rooted at joint 0: {self.parents}")
        for name in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights"):
            if not np.all(np.isfinite(getattr(self, name))):
                raise SMPLModelError(f"{self.path}: '{name}' contains NaN or Inf")
        if self.gender not in ("female", "male", "neutral"):
            raise SMPLModelError(f"{self.path}: unknown gender {self.gender!r} "
                                 "(expected 'female', 'male' or 'neutral')")

    @property
    def num_vertices(self) -> int:
        return self.v_template.shape[0]


class _ChumpyStandIn:
    """Takes the place of any chumpy class while unpickling; keeps the state."""

    def __init__(self, *args, **kwargs):
        self.state = None

    def __setstate__(self, state):
        self.state = state

    def to_array(self):
        states = self.state if isinstance(self.state, tuple) else (self.state,)
        for state in states:
            if isinstance(state, dict):
                for key in ("x", "_x", "a"):
                    if key in state:
                        return _as_array(state[key])
        raise SMPLModelError("a chumpy object in the pickle holds no array ('x')")


def _latin1_encode(text, encoding="latin1"):
    """``_codecs.encode`` as Python 3 pickles of bytes (protocol 2) call it, latin-1 only."""
    if encoding.replace("-", "").replace("_", "").lower() != "latin1":
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


class RefusedPickleClass(pickle.UnpicklingError):
    """A pickle asked for a class or function that no SMPL model file holds."""


#: (module, name) pairs an SMPL pickle may name, besides the chumpy and
#: scipy.sparse classes handled in `_SMPLUnpickler.find_class`. Python 2 names
#: (copy_reg, __builtin__) are mapped by `pickle` itself.
_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor"),
    ("__builtin__", "object"), ("builtins", "object"),
    ("__builtin__", "set"), ("builtins", "set"),
    ("__builtin__", "frozenset"), ("builtins", "frozenset"),
}


class _SMPLUnpickler(pickle.Unpickler):
    """Unpickles the official Python-2 SMPL files without chumpy installed.

    Model files are data, not code: only the classes an SMPL pickle holds are
    created -- NumPy arrays, dtypes and scalars, scipy.sparse matrices, and
    chumpy objects (as `_ChumpyStandIn`, read back as arrays). Any other
    class or function (``os.system``, ``builtins.eval`` ...) raises
    `RefusedPickleClass` before anything of it runs.
    """

    def find_class(self, module, name):
        if module.split(".")[0] == "chumpy":
            return _ChumpyStandIn
        if module == "scipy.sparse" or module.startswith("scipy.sparse."):
            cls = getattr(scipy.sparse, name, None)  # old module paths such as scipy.sparse.csc
            if isinstance(cls, type) and name.endswith(("_matrix", "_array")) and hasattr(cls, "tocsr"):
                return cls
        if module == "_codecs" and name == "encode":
            return _latin1_encode
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise RefusedPickleClass(f"{module}.{name}")


def _as_array(value):
    if isinstance(value, _ChumpyStandIn):
        return value.to_array()
    if scipy.sparse.issparse(value):
        return np.asarray(value.toarray())
    return np.asarray(value)


def _gender_from_name(path):
    name = Path(path).name.lower()
    if "_f_" in name or "female" in name:
        return "female"
    if "_m_" in name or "male" in name:
        return "male"
    return "neutral"


def _read_pickle(path):
    with open(path, "rb") as f:
        try:
            data = _SMPLUnpickler(f, encoding="latin1").load()
        except RefusedPickleClass as err:
            raise SMPLModelError(f"{path}: refused: the pickle asks for {err}, which no SMPL model file "
                                 "holds (model files are read as data, never run as code)") from None
        except Exception as err:  # any unpickling failure means: not a model file
            raise SMPLModelError(f"{path}: not a readable SMPL pickle ({type(err).__name__}: {err})") from None
    if not isinstance(data, dict):
        raise SMPLModelError(f"{path}: not a SMPL model (the pickle holds a {type(data).__name__}, not a dict)")
    return data


def _read_npz(path):
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except Exception as err:
        raise SMPLModelError(f"{path}: not a readable .npz ({type(err).__name__}: {err})") from None


def load_model(path: Union[str, os.PathLike]) -> SMPLModel:
    """Reads one SMPL-format model file (.pkl or .npz) into an `SMPLModel`.

    Raises FileNotFoundError for a missing file and SMPLModelError (a
    ValueError) naming the file and the problem for anything else.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SMPL model file not found: {path}")
    data = _read_npz(path) if path.suffix == ".npz" else _read_pickle(path)
    missing = [k for k in ("v_template", "shapedirs", "J_regressor", "weights", "f" if "faces" not in data else "faces")
               if k not in data]
    if "parents" not in data and "kintree_table" not in data:
        missing.append("kintree_table")
    if missing:
        raise SMPLModelError(f"{path}: not a SMPL model (missing {', '.join(missing)})")
    arrays = {key: _as_array(value) for key, value in data.items()
              if key in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights",
                         "parents", "kintree_table", "f", "faces", "landmark_ids", "gender")}
    V = arrays["v_template"].shape[0]
    if "parents" in arrays:
        parents = arrays["parents"]
    else:
        parents = arrays["kintree_table"][0].astype(np.int64)
        parents[0] = -1  # stored as 2**32 - 1 in the official files
    if "landmark_ids" in arrays:
        landmark_ids = arrays["landmark_ids"]
    elif V == SMPL_NUM_VERTICES:
        landmark_ids = SMPL_LANDMARK_VERTEX_IDS
    else:
        raise SMPLModelError(f"{path}: has {V} vertices (not SMPL's {SMPL_NUM_VERTICES}) "
                             "and no 'landmark_ids' array")
    gender = str(arrays["gender"]) if "gender" in arrays else _gender_from_name(path)
    return SMPLModel(
        v_template=arrays["v_template"], shapedirs=arrays["shapedirs"],
        posedirs=arrays.get("posedirs"), J_regressor=arrays["J_regressor"],
        weights=arrays["weights"], parents=parents,
        faces=arrays["faces"] if "faces" in arrays else arrays["f"],
        landmark_ids=landmark_ids, gender=gender, path=str(path))


def save_npz(model: SMPLModel, path: Union[str, os.PathLike]) -> None:
    """Writes an `SMPLModel` as a compressed `.npz` that `load_model` reads back."""
    fields = {f.name: getattr(model, f.name) for f in dataclasses.fields(model) if f.name != "path"}
    if not np.any(fields["posedirs"]):
        del fields["posedirs"]  # all zeros: the loader fills them in
    np.savez_compressed(path, **fields)


def _find_in(directory):
    """(female, male) official model paths in `directory`, None where absent."""
    found = {}
    listing = {p.name.lower(): p for p in Path(directory).iterdir()} if Path(directory).is_dir() else {}
    for gender, names in OFFICIAL_FILE_NAMES.items():
        found[gender] = next((listing[n.lower()] for n in names if n.lower() in listing), None)
    return found["female"], found["male"]


def find_models(model_dir: Optional[Union[str, os.PathLike]] = None) -> tuple[Path, Path]:
    """Paths (female, male) of the body model files to use.

    Looks in `model_dir` (the `--smpl-dir` argument), then `$SMPLR_SMPL_DIR`,
    then `smpl/models/`, for official SMPL files; where none are found it
    falls back to the project's open default body. A directory the user named
    explicitly that lacks a file is an error listing the names looked for.
    """
    for source, directory in (("--smpl-dir", model_dir), ("SMPLR_SMPL_DIR", os.environ.get("SMPLR_SMPL_DIR"))):
        if not directory:
            continue
        if not Path(directory).expanduser().is_dir():
            what = "is not a folder" if Path(directory).expanduser().exists() else "folder not found"
            undo = "drop --smpl-dir" if source == "--smpl-dir" else "unset SMPLR_SMPL_DIR"
            raise FileNotFoundError(f"{source} {directory}: {what} (it should hold the official SMPL "
                                    f"model files; {undo} to use the default models)")
        directory = Path(directory).expanduser()
        female, male = _find_in(directory)
        if female is None or male is None:
            wanted = " / ".join(OFFICIAL_FILE_NAMES["female"] if female is None else OFFICIAL_FILE_NAMES["male"])
            raise FileNotFoundError(
                f"{source} {directory}: no {'female' if female is None else 'male'} SMPL model "
                f"(looked for {wanted}); official SMPL can be obtained from {SMPL_DOWNLOAD}")
        return female, male
    female, male = _find_in(MODELS_DIR)
    if female is not None and male is not None:
        return female, male
    if not all(p.is_file() for p in OPEN_BODY_FILES.values()):
        raise FileNotFoundError(
            f"no SMPL models found and the open default body is missing from {MODELS_DIR}; "
            f"official SMPL can be obtained from {SMPL_DOWNLOAD}")
    global _told_open_body
    if not _told_open_body:
        log.warning("Official SMPL models not found; using the project's open default body (%s).", MODELS_DIR)
        _told_open_body = True
    return OPEN_BODY_FILES["female"], OPEN_BODY_FILES["male"]
