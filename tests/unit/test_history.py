"""The typed history: what history.json holds, and reading it back."""

import json

import pytest

from fedpriv.errors import ConfigError
from fedpriv.history import History, RoundRecord


def test_round_trip_keeps_every_field_and_omits_empty_optional_ones():
    history = History(
        "ckks",
        [
            RoundRecord(1, accuracy=0.5, seconds=1.0, bytes_up=10, clients=[3, 1]),
            RoundRecord(2, skipped="too few", aggregate_rejected_by=[4], dp_epsilon=0.0),
        ],
    )
    stored = json.loads(json.dumps(history.to_json()))
    assert "skipped" not in stored["rounds"][0] and "dp_epsilon" not in stored["rounds"][0]
    assert stored["rounds"][1]["skipped"] == "too few"
    assert stored["rounds"][1]["dp_epsilon"] == 0.0  # zero is a value, not an absence
    assert History.from_json(stored) == history


def test_finished_rounds_and_later_seconds():
    history = History("plaintext", [RoundRecord(1, accuracy=0.1, seconds=9.0)])
    assert history.later_seconds() == [9.0]  # one round: it is all there is
    history.append(RoundRecord(2, accuracy=None, seconds=1.0))
    history.append(RoundRecord(3, accuracy=0.3, seconds=2.0, skipped="x"))
    assert [r.finished for r in history] == [True, False, False]
    assert history.later_seconds() == [1.0, 2.0]
    assert len(history.upto(2)) == 2 and history.last() == history.rounds[-1]


def test_malformed_history_is_a_config_error():
    with pytest.raises(ConfigError, match="not a run history"):
        History.from_json({"rounds": []})
    with pytest.raises(ConfigError, match="not a round record"):
        History.from_json({"aggregation": "x", "rounds": [{"accuracy": 1.0}]})
