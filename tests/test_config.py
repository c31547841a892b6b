"""Tests of training.config (settings by concern) and the command line built from it.

References: the option list and one-line messages of the command line as it
was before the split, and the flat ``config`` dicts of the shipped
checkpoints' state.json files.
"""
import dataclasses
import json
import math
from pathlib import Path

import pytest

from training import STAGE_KINDS, TrainingError
from training.cli import build_parser, config_from_args
from training.config import (CONCERNS, DEFAULT_DATA, DEFAULT_TMP, SETTING_OWNERS, DataConfig, ModelConfig,
                             RunConfig, ScheduleConfig, StageConfig, command_line_options, stage_config)
from training.schedules import learning_rate

REPO = Path(__file__).resolve().parents[1]

#: Every option of ``python -m training`` before the split (the flags must all survive).
FLAGS = ("--data", "--train-list", "--val-list", "--augmentation", "--flip", "--voc", "--synthetic",
         "--synthetic-bodies",
         "--smpl-dir", "--name", "--lr", "--lr-width", "--epochs", "--steps", "--val-steps", "--batch-size",
         "--seed", "--finetune", "--resume", "--overwrite", "--tmp", "--quick", "--mixed-precision",
         "--dae-dropout", "--verbose", "--num-stacks", "--num-features", "--recipe", "--heatmap-peak",
         "--coord-loss-weight", "--grid-axes", "--stream", "--stream-pool", "--workers", "--train-check-batches",
         "--bn-recalibrate", "--log-every", "--log-images", "--error-bank")


@pytest.fixture
def data_dir(tmp_path):
    (tmp_path / "train.txt").write_text("a/0000.png\n")
    (tmp_path / "val.txt").write_text("a/0000.png\n")
    return tmp_path


def test_every_flag_is_built_from_one_field_and_none_is_left_over():
    options = command_line_options()
    flags = [flag for _, _, flag, _, _ in options]
    assert sorted(flags) == sorted(FLAGS) and len(set(flags)) == len(flags)
    assert "--exit-after-epoch" not in flags  # a test hook, not an option (SMPLR_TEST_EXIT_AFTER_EPOCH)
    # Each flag lands in the field of the concern that declares it.
    for concern, key, flag, help_text, _ in options:
        assert SETTING_OWNERS[key][0] == concern
        assert help_text and "{default}" not in help_text, flag
    parser_flags = {s for action in build_parser()._actions for s in action.option_strings}
    assert set(FLAGS) <= parser_flags
    # Fields without a flag are the schedule's per-stage constants.
    unflagged = {f.name for cls in CONCERNS.values() for f in dataclasses.fields(cls) if "flag" not in f.metadata}
    assert unflagged == {"lr_centre", "steps_growth", "max_steps"}


def test_defaults_without_options_are_the_stage_defaults(data_dir):
    parse = build_parser().parse_args
    for kind in STAGE_KINDS:
        from_cli = config_from_args(parse([kind, "-1", "--data", str(data_dir)]))
        direct = stage_config(kind, data=data_dir)
        assert from_cli.to_json() == dict(direct.to_json(), data=str(data_dir.resolve()), tmp=str(DEFAULT_TMP))
    config = stage_config("dae")
    assert config.data.root == DEFAULT_DATA and config.data.seed == 0 and config.run.name == "dae"
    assert stage_config("shapepose").run.finetune == ("shape", "pose")


def test_options_reach_their_concerns(data_dir, tmp_path):
    args = build_parser().parse_args([
        "shn", "0", "--data", str(data_dir), "--val-list", "val.txt", "--seed", "7", "--stream", "--flip",
        "--workers", "3",
        "--num-stacks", "2", "--num-features", "8", "--grid-axes", "camera", "--recipe", "fast",
        "--epochs", "3", "--lr", "0.002", "--steps", "4", "--name", "mine", "--tmp", str(tmp_path / "out"),
        "--finetune", "old", "--log-every", "5", "--bn-recalibrate", "2", "--verbose"])
    config = config_from_args(args)
    assert isinstance(config.data, DataConfig) and isinstance(config.model, ModelConfig)
    assert isinstance(config.schedule, ScheduleConfig) and isinstance(config.run, RunConfig)
    assert (config.data.root, config.data.seed, config.data.stream, config.data.workers) == (data_dir, 7, True, 3)
    assert config.data.flip and not stage_config("shn").data.flip
    assert (config.model.num_stacks, config.model.num_features, config.model.grid_axes) == (2, 8, "camera")
    # --recipe fast's settings, with the explicit --lr winning over the recipe's.
    assert (config.model.heatmap_peak, config.model.coord_loss_weight) == ("one", 1.0)
    assert (config.schedule.epochs, config.schedule.lr0, config.schedule.batch_size) == (3, 0.002, 32)
    assert config.schedule.steps == 4
    assert (config.run.name, config.run.finetune, config.run.log_every) == ("mine", ("old",), 5)
    assert config.run.tmp == (tmp_path / "out").resolve() and config.run.verbose
    assert config.checkpoint_dir == (tmp_path / "out").resolve() / "checkpoints" / "mine"
    assert config.schedule.learning_rate(2) == pytest.approx(learning_rate(2, 0.002, 10.0))
    # Flat reads, as callers and state.json name the settings.
    assert config.batch_size == 32 and config.grid_axes == "camera" and config.data.train_path == data_dir / "train.txt"


def test_state_json_config_stays_flat_and_shipped_checkpoints_still_read():
    config = stage_config("dae", synthetic=5)
    flat = config.to_json()
    assert set(flat) == set(SETTING_OWNERS) | {"kind"}
    assert flat["data"] == str(DEFAULT_DATA) and flat["finetune"] == [] and flat["synthetic"] == 5
    json.dumps(flat)
    rebuilt = StageConfig.from_settings("dae", {k: v for k, v in flat.items() if k != "kind"})
    assert rebuilt.to_json() == flat
    shipped = sorted(REPO.glob("pretrained/checkpoints/*/best/state.json"))
    assert shipped
    for path in shipped:
        state = json.loads(path.read_text())
        old = {k: v for k, v in state["config"].items() if k not in ("kind", "exit_after_epoch")}
        assert set(old) <= set(SETTING_OWNERS), path
        StageConfig.from_settings(state["kind"], old).validate()
        assert isinstance(state["config"]["num_stacks"], int)  # what evaluate.py and h200_train.sh read


@pytest.mark.parametrize("kind, settings, message", [
    ("dae", dict(epochs=0), "--epochs must be >= 1, got 0"),
    ("dae", dict(batch_size=0), "--batch-size must be >= 1, got 0"),
    ("dae", dict(steps=0), "steps must be >= 1, got 0"),
    ("dae", dict(lr_width=0.0), "--lr-width must be > 0"),
    ("dae", dict(lr0=math.inf), "--lr must be a finite number > 0"),
    ("dae", dict(lr0=math.nan), "--lr must be a finite number > 0"),
    ("shn", dict(heatmap_peak="flat"), "--heatmap-peak must be one of density, one"),
    ("shn", dict(grid_axes="image"), "--grid-axes must be one of world, camera"),
    ("shn", dict(coord_loss_weight=-1.0), "--coord-loss-weight must be a finite number >= 0"),
    ("shn", dict(num_stacks=0), "--num-stacks must be >= 1 and --num-features even"),
    ("shn", dict(num_features=3), "--num-stacks must be >= 1 and --num-features even"),
    ("dae", dict(dae_dropout=1.0), r"--dae-dropout must be in \[0, 1\)"),
    ("shn", dict(recipe="slow"), "--recipe must be one of spec, fast"),
    ("dae", dict(recipe="fast"), "--recipe fast applies to the shn stage only"),
    ("dae", dict(mixed_precision=True), "--mixed-precision applies to the SHN stage only"),
    ("dae", dict(grid_axes="camera"), "--heatmap-peak, --coord-loss-weight, --grid-axes, --stream, "
                                      "--flip, --train-check-batches and --bn-recalibrate apply to the shn stage only"),
    ("shn", dict(stream_pool=-1), "--stream-pool must be >= 0"),
    ("shn", dict(workers=-1), "--workers must be >= 0"),
    ("shn", dict(augmentation=4), r"--augmentation must be one of \[0, 1, 2, 3\] for the SHN"),
    ("pose", dict(augmentation=2), "--augmentation must be 1 .SPEC input noise. or 0 .none. for the pose stage"),
    ("dae", dict(synthetic=-1), "--synthetic must be >= 0"),
    ("dae", dict(synthetic_bodies="mesh"), "--synthetic-bodies must be one of auto, model, skeleton"),
    ("shape", dict(synthetic_bodies="skeleton"), "cannot train the shape stage"),
    ("dae", dict(log_every=0), "--log-every must be >= 1"),
    ("shn", dict(bn_recalibrate=-1), "--train-check-batches and --bn-recalibrate must be >= 0"),
    ("dae", dict(resume=True, overwrite=True), "--resume and --overwrite exclude each other"),
    ("dae", dict(name="a/b"), "--name must be a plain folder name"),
    ("shapepose", dict(finetune=("a", "b", "c")), "shapepose --finetune takes SHAPE POSE"),
    ("dae", dict(colour=1), "unknown setting 'colour' for stage dae"),
])
def test_each_concern_refuses_impossible_settings_in_one_line(kind, settings, message):
    with pytest.raises(TrainingError, match=message) as error:
        stage_config(kind, **settings)
    assert "\n" not in str(error.value)
