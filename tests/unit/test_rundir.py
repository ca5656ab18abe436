"""The run directory owns every file name and writes atomically."""

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, RecordDict

from fedpriv.config import RunConfig
from fedpriv.errors import ConfigError
from fedpriv.history import History, RoundRecord
from fedpriv.models import state_from_bytes, state_to_bytes
from fedpriv.rundir import RunDirectory


def test_create_refuses_a_directory_holding_a_run(tmp_path):
    rundir = RunDirectory(tmp_path / "run")
    rundir.create()
    assert not rundir.holds_run()
    rundir.write_config(RunConfig(num_clients=3))
    with pytest.raises(ConfigError, match="already holds a run"):
        RunDirectory(tmp_path / "run").create()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="not a directory"):
        RunDirectory(tmp_path / "file").create()


def test_config_history_checkpoints_and_model_round_trip(tmp_path):
    rundir = RunDirectory(tmp_path)
    config = RunConfig(aggregation="ckks", num_clients=3)
    rundir.write_config(config)
    assert rundir.read_config() == config
    history = History("ckks", [RoundRecord(1, accuracy=0.25)])
    rundir.write_history(history)
    assert rundir.read_history() == history and rundir.has_history()
    for r in (3, 1, 2):
        rundir.write_checkpoint(r, RecordDict({"arrays": ArrayRecord({"w": Array(np.ones(2))})}))
    assert rundir.checkpoint_rounds() == [1, 2, 3]
    assert np.array_equal(rundir.read_checkpoint(2)["arrays"]["w"].numpy(), np.ones(2))
    state = {"w": np.arange(4, dtype=np.float32)}
    rundir.write_model(state_to_bytes(state))
    assert np.array_equal(state_from_bytes(rundir.model_path.read_bytes())["w"], state["w"])
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes leave nothing behind


def test_missing_config_names_the_directory(tmp_path):
    with pytest.raises(ConfigError, match="not a run directory"):
        RunDirectory(tmp_path).read_config()


def test_server_view_names_and_attack_files(tmp_path):
    rundir = RunDirectory(tmp_path)
    rundir.record_view(1, "train-sent", b"abc")
    rundir.record_view(1, "train-recv-7", b"d")
    rundir.record_view(1, "evaluate-recv-7", b"e")
    assert list(rundir.view_files(1, "train-recv-")) == ["train-recv-7"]
    assert rundir.has_server_view()
    assert rundir.attack_file("outsider", "loss").name == "loss.json"
    assert rundir.attack_file("outsider", "ig", "-images.npz").name == "ig-images.npz"


def test_reuse_keys_by_scope(tmp_path):
    rundir = RunDirectory(tmp_path)
    assert rundir.reuse_key("run") is None
    rundir.write_reuse_key("run", {"a": 1})
    rundir.write_reuse_key("attacks/outsider", {"b": 2})
    rundir.forget_reuse_key("run")
    assert rundir.reuse_key("run") is None and rundir.reuse_key("attacks/outsider") == {"b": 2}
