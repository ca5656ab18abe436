"""One recording grid for every scheme: bytes per phase, who replied, the server view."""

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, MessageType, RecordDict
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key

from fedpriv.federation.recording import RecordingGrid
from fedpriv.federation.secagg import secagg_stage
from fedpriv.rundir import RunDirectory
from fedpriv.wire import payload_bytes


class _Grid:
    def __init__(self, answer):
        self.answer = answer

    def get_node_ids(self):
        return [1, 2]

    def send_and_receive(self, messages, timeout=None):
        return [self.answer(m) for m in messages]


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

    grid = RecordingGrid(_Grid(answer), rundir, record_view=True)
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

    grid = RecordingGrid(_Grid(answer), rundir, True, secagg_stage, "unmask")
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
        _Grid(lambda m: Message(content=content, reply_to=m)), RunDirectory(tmp_path), False
    )
    grid.current_round = 1
    grid.send_and_receive([_message(1, content)])
    assert grid.traffic(1).bytes_up["train"] == grid.traffic(1).bytes_down["train"] > 0
    assert not (tmp_path / "server_view").exists()
