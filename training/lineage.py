"""Which runs a checkpoint's weights come from (``state.json``'s ``lineage``).

A run started with ``--finetune NAME ...`` continues weights that other runs
trained, and those may have continued others. Each checkpoint's state keeps
the whole chain, oldest run first, ending with the run that wrote it::

    "lineage": [
      {"run": "shn_pretrained", "kind": "shn", "epochs": 40, "samples": 640000, ...},
      {"run": "shn", "kind": "shn", "epochs": 32, "samples": 512000, "minutes": 21.9,
       "finetune": ["shn_pretrained"], "config": {...}}
    ]

``samples`` counts training samples drawn (optimizer steps x batch size:
images for the SHN); ``minutes`` is the wall time of the run's epochs,
validation included. A parent checkpoint without a ``lineage`` of its own
(written before this key existed) contributes one entry built from its state.
"""
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from training.checkpoints import CheckpointStore

PathLike = Union[str, Path]


def run_entry(name: str, state: Mapping[str, Any], minutes: Optional[float] = None,
              finetune: Sequence[str] = ()) -> Dict[str, Any]:
    """One lineage entry (dict) for the run that wrote ``state`` (a state.json dict) as ``name``."""
    config = state.get("config") or {}
    steps = state.get("global_step")
    batch = config.get("batch_size")
    entry = {"run": name, "kind": state.get("kind"), "epochs": state.get("epochs_done"),
             "samples": int(steps) * int(batch) if steps is not None and batch is not None else None}
    if minutes is not None:
        entry["minutes"] = round(float(minutes), 2)
    if finetune:
        entry["finetune"] = list(finetune)
    entry["config"] = dict(config)
    return entry


def parent_lineage(tmp: PathLike, names: Sequence[str]) -> List[Dict[str, Any]]:
    """The lineage (list of entries) that ``--finetune names`` bring along, in the names' order.

    Reads the slot ``training.checkpoints.load_named`` loads (best, else
    latest) of each name under the ``--tmp`` root ``tmp``; a name without a
    checkpoint contributes nothing (the fine-tune itself reports it).
    """
    entries: List[Dict[str, Any]] = []
    for name in names:
        store = CheckpointStore(tmp, name)
        slot = "best" if store.has("best") else ("latest" if store.has("latest") else None)
        state = None if slot is None else store.read_state(slot)
        if state is None:
            continue
        earlier = state.get("lineage")
        if isinstance(earlier, list) and earlier:
            entries.extend(dict(entry) for entry in earlier)
        else:
            entries.append(run_entry(name, state))
    return entries


def with_this_run(before: Sequence[Mapping[str, Any]], name: str, state: Mapping[str, Any], minutes: float,
                  finetune: Sequence[str] = ()) -> List[Dict[str, Any]]:
    """``before`` plus the entry of the run now writing ``state`` (its epochs so far)."""
    return [dict(entry) for entry in before] + [run_entry(name, state, minutes, finetune)]


def resumed_lineage(state: Optional[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """The earlier runs of a run resumed from ``state``: its lineage minus its own (last) entry."""
    entries = list((state or {}).get("lineage") or [])
    return [dict(entry) for entry in entries[:-1]]


def resumed_minutes(state: Optional[Mapping[str, Any]]) -> float:
    """Minutes the resumed run had already spent (its own lineage entry's ``minutes``), 0 if unknown."""
    entries = list((state or {}).get("lineage") or [])
    return float(entries[-1].get("minutes") or 0.0) if entries else 0.0
