"""What crosses the wire: a message payload as the exact bytes Flower serializes."""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord, Error, Message, RecordDict

from fedpriv.errors import FedprivError, ReplyCode
from fedpriv.flower_internals import recorddict_from_bytes, recorddict_size, recorddict_to_bytes
from fedpriv.parameters import State


def payload_bytes(content: RecordDict) -> bytes:
    """Serialize a message's content as Flower's protobuf does."""
    return recorddict_to_bytes(content)


def payload_size(content: RecordDict) -> int:
    """Number of bytes the serialized content occupies on the wire."""
    return recorddict_size(content)


def payload_from_bytes(data: bytes) -> RecordDict:
    """Parse bytes written by :func:`payload_bytes` back into a ``RecordDict``."""
    try:
        return recorddict_from_bytes(data)
    except Exception as err:  # protobuf raises DecodeError and friends
        raise FedprivError(f"not a serialized Flower RecordDict ({err})") from err


def state_to_record(state: State) -> ArrayRecord:
    """Wrap named numpy arrays (a model's state) into an ``ArrayRecord``."""
    return ArrayRecord({name: Array(np.ascontiguousarray(value)) for name, value in state.items()})


def record_to_state(record: ArrayRecord) -> State:
    """Unwrap an ``ArrayRecord`` of plain numpy arrays into named arrays."""
    return {name: record[name].numpy() for name in record.keys()}


def arrays_of(content: RecordDict, key: str = "arrays") -> ArrayRecord:
    """The ``ArrayRecord`` called ``key`` of a message's content.

    Raises
    ------
    FedprivError
        If there is none (a malformed message).

    """
    if key not in content.array_records:
        raise FedprivError(f"the message has no '{key}' array record")
    return content.array_records[key]


def server_round(content: RecordDict) -> int:
    """The round a strategy's train or evaluate message belongs to (its ``config`` record)."""
    configs = content.config_records
    value = configs["config"].get("server-round") if "config" in configs else None
    if not isinstance(value, int) or isinstance(value, bool):
        raise FedprivError(f"the message carries no integer server-round (got {value!r})")
    return value


def refusal(msg: Message, code: ReplyCode, reason: str) -> Message:
    """An error reply to ``msg`` the server understands (``code``) and logs (``reason``)."""
    return Message(Error(code=int(code), reason=reason), reply_to=msg)
