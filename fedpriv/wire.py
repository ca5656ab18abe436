"""What crosses the wire: a message payload as the exact bytes Flower serializes."""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord, RecordDict
from flwr.common.serde import recorddict_from_proto, recorddict_to_proto
from flwr.proto.recorddict_pb2 import RecordDict as RecordDictProto

from fedpriv.errors import FedprivError


def payload_bytes(content: RecordDict) -> bytes:
    """Serialize a message's content as Flower's protobuf does."""
    return recorddict_to_proto(content).SerializeToString()


def payload_size(content: RecordDict) -> int:
    """Number of bytes the serialized content occupies on the wire."""
    return recorddict_to_proto(content).ByteSize()


def payload_from_bytes(data: bytes) -> RecordDict:
    """Parse bytes written by :func:`payload_bytes` back into a ``RecordDict``."""
    proto = RecordDictProto()
    try:
        proto.ParseFromString(data)
        return recorddict_from_proto(proto)
    except Exception as err:  # protobuf raises DecodeError and friends
        raise FedprivError(f"not a serialized Flower RecordDict ({err})") from err


def state_to_record(state: dict[str, np.ndarray]) -> ArrayRecord:
    """Wrap named numpy arrays (a model's state) into an ``ArrayRecord``."""
    return ArrayRecord({name: Array(np.ascontiguousarray(value)) for name, value in state.items()})


def record_to_state(record: ArrayRecord) -> dict[str, np.ndarray]:
    """Unwrap an ``ArrayRecord`` of plain numpy arrays into named arrays."""
    return {name: record[name].numpy() for name in record.keys()}
