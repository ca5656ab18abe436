"""One recording grid for every scheme: bytes per phase, who replied, the server view."""

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, MessageType, RecordDict
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key
from support import FakeGrid

from fedpriv.federation.recording import RecordingGrid
from fedpriv.federation.secagg import secagg_stage
from fedpriv.rundir import RunDirectory
from fedpriv.wire import payload_bytes


def _message(node, content, kind=MessageType.TRAIN, group=""):
    message = Message(content=content, dst_node_id=node, message_type=kind)
    message.metadata.group_id = group
    return message


def test_a_broadcast_is_stored_once_and_counted_per_recipient(task_identity, tmp_path):
    rundir = RunDirectory(tmp_path)
    content = RecordDict({"arrays": ArrayRecord({"w": Array(np.ones(8))})})
    reply = RecordDict({"arrays": ArrayRecord({"w": Array(np.zeros(3))})})

    def answer(message):
        if message.metadata.dst_node_id == 2:
            return Message(Error(code=7, reason="crashed"), reply_to=message)
        return Message(content=reply, reply_to=message)

    grid = RecordingGrid(FakeGrid([1, 2], answer), rundir, record_view=True)
    grid.current_round = 3
    grid.send_and_receive([_message(1, content), _message(2, content)])
    traffic = grid.traffic(3)
    size = len(payload_bytes(content))
    assert traffic.bytes_down["train"] == 2 * size
    assert traffic.bytes_up["train"] == len(payload_bytes(reply))
    assert traffic.replied["train"] == {1} and traffic.failed == {2: "crashed"}
    assert traffic.refused_with(7) == [2]
    stored = sorted(p.name for p in rundir.view_dir(3).iterdir())
    assert stored == ["train-recv-1.pb", "train-sent.pb"]
    assert (rundir.view_dir(3) / "train-sent.pb").stat().st_size == size


def test_per_node_messages_are_stored_per_node_and_rounds_come_from_group_ids(
    task_identity, tmp_path
):
    rundir = RunDirectory(tmp_path)

    def staged(node, stage):
        configs = ConfigRecord({Key.STAGE: stage, "node": node})
        return _message(node, RecordDict({RECORD_KEY_CONFIGS: configs}), group="2")

    def answer(message):
        return Message(content=RecordDict(), reply_to=message)

    grid = RecordingGrid(FakeGrid([1, 2], answer), rundir, True, secagg_stage, "unmask")
    grid.send_and_receive([staged(1, "share_keys"), staged(2, "share_keys")])
    grid.send_and_receive([staged(1, "unmask")])
    names = sorted(p.stem for p in rundir.view_dir(2).iterdir())
    assert names == [
        "train-share_keys-recv-1",
        "train-share_keys-recv-2",
        "train-share_keys-sent-1",
        "train-share_keys-sent-2",
        "train-unmask-recv-1",
        "train-unmask-sent",
    ]
    assert grid.traffic(2).replied["train"] == {1}  # only the update stage counts


def test_without_recording_bytes_are_still_counted(task_identity, tmp_path):
    content = RecordDict({"arrays": ArrayRecord({"w": Array(np.ones(4))})})
    grid = RecordingGrid(
        FakeGrid([1], lambda m: Message(content=content, reply_to=m)), RunDirectory(tmp_path), False
    )
    grid.current_round = 1
    grid.send_and_receive([_message(1, content)])
    assert grid.traffic(1).bytes_up["train"] == grid.traffic(1).bytes_down["train"] > 0
    assert not (tmp_path / "server_view").exists()


def test_a_stop_request_ends_the_wait_for_replies(task_identity, tmp_path):
    import threading
    import time

    import pytest

    from fedpriv.federation import cancel

    content = RecordDict({"arrays": ArrayRecord({"w": Array(np.ones(2))})})
    grid = RecordingGrid(FakeGrid([1], lambda m: None), RunDirectory(tmp_path), False)
    timer = threading.Timer(0.3, cancel.STOP.set)
    timer.start()
    started = time.monotonic()
    try:
        with pytest.raises(cancel.RunCancelled):
            grid.send_and_receive([_message(1, content)], timeout=60)
    finally:
        cancel.STOP.clear()
    assert time.monotonic() - started < 5


def test_the_wait_for_replies_ends_at_the_timeout(task_identity, tmp_path):
    content = RecordDict({"arrays": ArrayRecord({"w": Array(np.ones(2))})})
    grid = RecordingGrid(FakeGrid([1], lambda m: None), RunDirectory(tmp_path), False)
    assert list(grid.send_and_receive([_message(1, content)], timeout=0.3)) == []


def test_only_the_listed_rounds_are_stored_and_the_rest_are_counted(task_identity, tmp_path):
    from fedpriv.config import RunConfig
    from fedpriv.schemes.sight import NotVisible, Sight

    config = RunConfig(server_view_rounds="1,3")
    assert config.recorded_rounds == frozenset({1, 3})
    rundir = RunDirectory(tmp_path)
    content = RecordDict({"arrays": ArrayRecord({"w": Array(np.ones(8))})})

    def answer(message):
        return Message(content=content, reply_to=message)

    grid = RecordingGrid(FakeGrid([1], answer), rundir, config.recorded_rounds)
    for server_round in (1, 2, 3):
        grid.send_and_receive([_message(1, content, group=str(server_round))])
    assert [p.name for p in sorted(rundir.path.joinpath("server_view").iterdir())] == [
        "round-001",
        "round-003",
    ]
    size = len(payload_bytes(content))
    assert grid.traffic(2).bytes_up["train"] == grid.traffic(2).bytes_down["train"] == size
    sight = Sight(rundir, config)
    sight.rounds = [1, 2, 3]
    try:
        sight.updates(2)
    except NotVisible as err:
        assert err.reason == "the server view of round 2 was not recorded (server-view-rounds 1,3)"
    else:
        raise AssertionError("round 2 was not recorded")


def test_server_view_rounds_are_checked():
    import pytest

    from fedpriv.config import RunConfig
    from fedpriv.errors import ConfigError

    assert RunConfig().recorded_rounds is True
    assert RunConfig(record_server_view=False, server_view_rounds="1").recorded_rounds is False
    for bad in ("0", "1,,2", "a", "-1", "1;2"):
        with pytest.raises(ConfigError, match="server-view-rounds must list rounds >= 1"):
            RunConfig(server_view_rounds=bad)


def test_nodes_are_ordered_by_partition_and_past_the_cap_by_node_id(
    task_identity, tmp_path, monkeypatch
):
    from fedpriv.federation import recording

    asked = []

    class CountingGrid(FakeGrid):
        def push_messages(self, messages):
            messages = list(messages)
            asked.extend(m.metadata.dst_node_id for m in messages)
            return super().push_messages(messages)

    nodes = [30, 10, 20]  # partitions 0, 1, 2
    grid = RecordingGrid(CountingGrid(nodes, lambda m: None), RunDirectory(tmp_path), False)
    assert list(grid.get_node_ids()) == [30, 10, 20] and sorted(asked) == [10, 20, 30]
    assert list(grid.get_node_ids()) == [30, 10, 20] and len(asked) == 3  # asked once
    monkeypatch.setattr(recording, "ROSTER_MAX_NODES", 2)
    asked.clear()
    grid = RecordingGrid(CountingGrid(nodes, lambda m: None), RunDirectory(tmp_path), False)
    assert list(grid.get_node_ids()) == [10, 20, 30] and asked == []
