"""What crosses the wire: exact bytes, and records read from messages."""

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from fedpriv.errors import FedprivError
from fedpriv.wire import (
    arrays_of,
    payload_bytes,
    payload_from_bytes,
    payload_size,
    record_to_state,
    server_round,
    state_to_record,
)


def test_payload_bytes_round_trip_and_size():
    content = RecordDict(
        {
            "arrays": state_to_record({"w": np.arange(6, dtype=np.float32).reshape(2, 3)}),
            "metrics": MetricRecord({"loss": 0.5}),
        }
    )
    data = payload_bytes(content)
    assert payload_size(content) == len(data)
    back = payload_from_bytes(data)
    assert np.array_equal(record_to_state(back["arrays"])["w"], np.arange(6).reshape(2, 3))
    with pytest.raises(FedprivError, match="not a serialized Flower RecordDict"):
        payload_from_bytes(b"\xff" * 9)


def test_records_are_read_by_kind_and_refused_when_missing():
    content = RecordDict(
        {
            "arrays": ArrayRecord({"w": Array(np.zeros(1))}),
            "config": ConfigRecord({"server-round": 4}),
        }
    )
    assert list(arrays_of(content).keys()) == ["w"]
    assert server_round(content) == 4
    with pytest.raises(FedprivError, match="no 'other' array record"):
        arrays_of(content, "other")
    with pytest.raises(FedprivError, match="no integer server-round"):
        server_round(RecordDict({"config": ConfigRecord({"server-round": "4"})}))
