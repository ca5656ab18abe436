"""Resuming a run: the last round whose checkpoint and history agree."""

from pathlib import Path

import numpy as np
import pytest
from flwr.app import (
    Array,
    ArrayRecord,
    RecordDict,
)

from fedpriv.config import RunConfig
from fedpriv.crypto.presets import DEFAULT_PRESET, get_preset
from fedpriv.errors import ConfigError
from fedpriv.history import History, RoundRecord
from fedpriv.resume import resume_point
from fedpriv.rundir import RunDirectory

ROOT = Path(__file__).resolve().parents[2]
PRESET = get_preset(DEFAULT_PRESET)


# -- resume ---------------------------------------------------------------------------------
def _fake_run(tmp_path, history_rounds, checkpoint_rounds):
    rundir = RunDirectory(tmp_path / "run")
    rundir.create()
    config = RunConfig(num_server_rounds=4, out_dir=str(rundir.path))
    rundir.write_config(config)
    rundir.write_history(History("plaintext", [RoundRecord(r) for r in history_rounds]))
    for r in checkpoint_rounds:
        arrays = ArrayRecord({"w": Array(np.full(2, float(r), np.float32))})
        rundir.write_checkpoint(r, RecordDict({"arrays": arrays}))
    return rundir, config


def test_resume_continues_after_the_last_round_with_checkpoint_and_history(tmp_path):
    # Killed after writing round 3's checkpoint but before its history entry.
    rundir, config = _fake_run(tmp_path, [1, 2], [1, 2, 3])
    point = resume_point(rundir, config.replace(resume=True))
    assert point.last_round == 2 and len(point.history.rounds) == 2
    assert np.array_equal(point.arrays["w"].numpy(), [2.0, 2.0])


def test_resume_refuses_another_federation(tmp_path):
    rundir, config = _fake_run(tmp_path, [1], [1])
    with pytest.raises(ConfigError, match="learning-rate differ"):
        resume_point(rundir, config.replace(resume=True, learning_rate=0.3))
