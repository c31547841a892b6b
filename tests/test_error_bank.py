"""tools/shn_error_bank.py: the SHN's errors on stream frames, as the SMPLR stages' --error-bank reads them."""
import importlib.util

import numpy as np

import DataReader
from conftest import REPO_ROOT


def _tool():
    spec = importlib.util.spec_from_file_location("shn_error_bank", REPO_ROOT / "tools" / "shn_error_bank.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_error_bank_holds_the_shn_errors_of_the_streams_frames_and_keeps_an_existing_file(tmp_path, capsys):
    import keras

    from DataReader.stream import SyntheticStream
    from models import SHN
    from models.flip import shn_points
    from training.checkpoints import CheckpointStore
    from training.cli import run_reporting_user_errors
    from training.evaluate import load_shn

    tool = _tool()
    tmp = tmp_path / "tmp"
    keras.utils.set_random_seed(0)
    tiny = SHN(num_stacks=1, num_features=16)  # untrained: its errors are large
    tiny.build((1, 256, 256, 3))
    CheckpointStore(tmp, "shn").save("best", {"shn": tiny}, {"kind": "shn", "epochs_done": 1, "best_epoch": 1,
                                                            "config": {"num_stacks": 1, "num_features": 16}})
    out = tmp_path / "bank.npz"
    args = ["-1", "shn", "--tmp", str(tmp), "--out", str(out), "--frames", "6", "--batch-size", "4",
            "--workers", "0", "--seed", "5"]
    assert run_reporting_user_errors(tool.main, args) == 0, capsys.readouterr().err
    bank = np.load(out)
    assert bank["errors"].shape == bank["points"].shape == (6, 41, 3) and bank["errors"].dtype == np.float16
    assert (str(bank["garments"]), str(bank["cameras"]), int(bank["seed"])) == ("tight", "cloth3d", 5)

    # The same frames straight from the stream (same seed, no augmentation), through the same SHN.
    shn, _ = load_shn(tmp, "shn")
    with SyntheticStream(4, seed=5, workers=0, augmentation=0, garments="tight", cameras="cloth3d") as stream:
        batches = [stream.next_batch() for _ in range(2)]
    points = np.concatenate([b["points"] for b in batches])[:6]
    predicted = np.concatenate([np.asarray(shn_points(shn, b["image"], b["root_camera"], False, training=False))
                                for b in batches])[:6]
    assert np.abs(predicted - points).max() > 0.05  # an untrained SHN: errors far above float16's steps
    np.testing.assert_allclose(bank["points"].astype(np.float32), points, atol=1e-3)
    np.testing.assert_allclose(bank["errors"].astype(np.float32), predicted - points, rtol=2e-3, atol=2e-3)
    np.testing.assert_array_equal(DataReader.load_error_bank(out), bank["errors"].astype(np.float32))

    # An existing --out: one line, the file untouched.
    before = out.read_bytes()
    capsys.readouterr()
    assert run_reporting_user_errors(tool.main, args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{out} exists" in err
    assert out.read_bytes() == before
