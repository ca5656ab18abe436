"""Recording a Flower app's run: names, rounds, and the app's records as the attacks read them."""

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from support import FakeGrid
from torch.utils.data import DataLoader, TensorDataset

from fedpriv.data.app_data import app_records
from fedpriv.data.datasets import load_dataset
from fedpriv.errors import ConfigError
from fedpriv.federation.app_recording import AppRecipe, AppRecordingGrid, dotted_path
from fedpriv.registry import check_dataset_name
from fedpriv.rundir import RunDirectory


class Net(torch.nn.Module):
    """An app's model, built with no arguments."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)


def images(partition_id: int, num_partitions: int):
    """Four 1x2x2 images per partition, labelled by partition."""
    x = torch.full((4, 1, 2, 2), (partition_id + 1) / (num_partitions + 1))
    return x, torch.full((4,), partition_id)


def batches(partition_id: int, num_partitions: int):
    """As ``flwr new``'s templates: (trainloader, testloader) of dict batches."""
    x, y = images(partition_id, num_partitions)
    rows = [{"img": x[i : i + 2], "label": y[i : i + 2]} for i in (0, 2)]
    return rows, None


def flat(partition_id: int, num_partitions: int):
    return torch.rand(3, 4), torch.zeros(3, dtype=torch.int64)


def test_an_apps_loader_gives_every_partitions_records():
    for loader in ("images", "batches"):
        dataset, parts = app_records(f"app:{__name__}:{loader}", 3)
        assert dataset.x.shape == (12, 1, 2, 2) and dataset.num_classes == 3
        assert [list(dataset.y[p]) for p in parts] == [[0] * 4, [1] * 4, [2] * 4]
    # A DataLoader of (x, y) batches reads the same.
    loader = DataLoader(TensorDataset(*images(0, 1)), batch_size=3)
    assert len(np.concatenate([b[1] for b in loader])) == 4


def test_records_that_are_not_images_in_the_unit_range_are_refused():
    with pytest.raises(ConfigError, match=r"shape \(9, 4\).*\(n, c, h, w\) in \[0, 1\]"):
        app_records(f"app:{__name__}:flat", 3)


def test_an_app_dataset_is_a_name_for_the_attacks_only():
    assert check_dataset_name("app:pkg.task:load_data") == "app:pkg.task:load_data"
    with pytest.raises(ConfigError, match="Flower app's loader"):
        load_dataset("app:pkg.task:load_data")
    with pytest.raises(ConfigError, match="unknown dataset"):
        check_dataset_name("app:not a path")


def test_dotted_paths_name_importable_objects_only():
    assert dotted_path(images) == f"{__name__}:images"
    assert dotted_path("pkg.mod:Net") == "pkg.mod:Net"
    with pytest.raises(ConfigError, match="no importable dotted path"):
        dotted_path(lambda: None)


def test_rounds_are_counted_where_a_strategy_names_none(task_identity, tmp_path):
    """Without a ``server-round`` in the config, each training exchange is a round; the
    model a message carries is the global model after the round before it."""

    def answer(message: Message) -> Message:
        arrays = ArrayRecord({"w": Array(np.ones(2, np.float32))})
        metrics = MetricRecord({"num-examples": 1})
        return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=message)

    names = (f"{__name__}:Net", f"{__name__}:images")
    grid = AppRecordingGrid(FakeGrid([7, 8], answer), tmp_path / "run", AppRecipe(0.1), *names)
    for server_round in (1, 2):
        content = RecordDict(
            {"arrays": ArrayRecord({"w": Array(np.full(2, server_round, np.float32))}),
             "config": ConfigRecord({"lr": 0.1})}
        )  # fmt: skip
        sent = [Message(content, dst_node_id=n, message_type="train") for n in grid.get_node_ids()]
        assert len(list(grid.send_and_receive(sent))) == 2
    rundir = RunDirectory(tmp_path / "run")
    assert rundir.checkpoint_rounds() == [1]  # round 2's message carried round 1's model
    assert sorted(rundir.view_files(2, "train-recv-")) == ["train-recv-7", "train-recv-8"]
    config = rundir.read_config()
    assert (config.num_server_rounds, config.num_clients, config.aggregation) == (2, 2, "plaintext")
    with pytest.raises(ConfigError, match="fedpriv-record-dir .* already holds a run"):
        AppRecordingGrid(FakeGrid([7], answer), tmp_path / "run", AppRecipe(0.1), *names)
