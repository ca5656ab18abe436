"""Faults: bad replies, corrupt aggregates, missing clients, kills and restarts."""

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Error,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from support import EQUIVALENCE, FakeGrid, client_context

import clients.app as client_app
import fedpriv.apps.client as client_runtime
from fedpriv.config import RunConfig
from fedpriv.crypto.encoding import UpdateEncoding
from fedpriv.crypto.keys import load_server_context, make_context
from fedpriv.crypto.packing import encrypt_update
from fedpriv.crypto.presets import DEFAULT_PRESET, get_preset
from fedpriv.data.partition import ClientData
from fedpriv.errors import ConfigError, ReplyCode
from fedpriv.federation.recording import RecordingGrid
from fedpriv.federation.rounds import RoundLoop, RoundPolicy
from fedpriv.history import History
from fedpriv.models import load_state, state_from_bytes
from fedpriv.rundir import RunDirectory
from fedpriv.schemes.base import load_scheme
from fedpriv.strategies.sampling import Sampling
from fedpriv.task import new_model, num_parameters
from strategies import CkksFedAvg, PlaintextFedAvg

ROOT = Path(__file__).resolve().parents[2]
PRESET = get_preset(DEFAULT_PRESET)


def _train_request(arrays: ArrayRecord, node: int = 1, server_round: int = 1) -> Message:
    content = RecordDict({"arrays": arrays, "config": ConfigRecord({"server-round": server_round})})
    return Message(content=content, dst_node_id=node, message_type=MessageType.TRAIN)


def _reply(node: int, content: RecordDict | None = None, error: Error | None = None) -> Message:
    request = _train_request(ArrayRecord(), node)
    if error is not None:
        return Message(error, reply_to=request)
    return Message(content=content, reply_to=request)


# -- plaintext: each bad reply is left out, the round goes on ---------------------------------
def _plain_reply(node: int, arrays: dict, weight: object = 10) -> Message:
    record = ArrayRecord({k: Array(v) for k, v in arrays.items()})
    metrics = MetricRecord({"num-examples": weight, "partition-id": node})  # type: ignore[dict-item]
    return _reply(node, RecordDict({"arrays": record, "metrics": metrics}))


def test_plaintext_bad_replies_are_rejected_one_by_one(task_identity):
    good = {"w": np.ones(4, np.float32), "b": np.zeros(2, np.float32)}
    nan = {"w": np.array([1, np.nan, 1, 1], np.float32), "b": np.zeros(2, np.float32)}
    shape = {"w": np.ones(5, np.float32), "b": np.zeros(2, np.float32)}
    dtype = {"w": np.ones(4, np.float64), "b": np.zeros(2, np.float32)}
    missing = {"w": np.ones(4, np.float32)}
    corrupt = ArrayRecord(
        {
            "w": Array(dtype="float32", shape=(4,), stype="numpy.ndarray", data=b"\x93NUMPY\x00"),
            "b": Array(np.zeros(2, np.float32)),
        }
    )
    replies = [
        _plain_reply(0, good),
        _plain_reply(1, {k: 3 * v for k, v in good.items()}, weight=30),
        _plain_reply(2, nan),
        _plain_reply(3, shape),
        _plain_reply(4, dtype),
        _plain_reply(5, missing),
        _plain_reply(6, good, weight=0),
        _plain_reply(7, good, weight=float("inf")),
        _reply(8, RecordDict({"arrays": corrupt, "metrics": MetricRecord({"num-examples": 5})})),
        _reply(9, error=Error(code=0, reason="client crashed mid-round")),
        _plain_reply(10, good, weight=float("nan")),
        _reply(  # a partition id that is not an int: ordered last, still averaged
            11,
            RecordDict(
                {
                    "arrays": ArrayRecord({k: Array(v) for k, v in good.items()}),
                    "metrics": MetricRecord({"num-examples": 5, "partition-id": 1.5}),
                }
            ),
        ),
        _reply(  # a metric record named differently from everyone else's
            12,
            RecordDict(
                {
                    "arrays": ArrayRecord({k: Array(v) for k, v in good.items()}),
                    "other": MetricRecord({"num-examples": 5, "partition-id": 12}),
                }
            ),
        ),
    ]
    strategy = PlaintextFedAvg(Sampling())
    strategy.layout = {"w": ((4,), "float32"), "b": ((2,), "float32")}
    arrays, _ = strategy.aggregate_train(1, replies)
    # (1*10 + 3*30 + 1*5) / 45: nodes 0, 1 and 11 only.
    assert np.allclose(arrays["w"].numpy(), 105 / 45)
    rejected = strategy.round_facts(1).rejected
    assert set(rejected) == {2, 3, 4, 5, 6, 7, 8, 10, 12}
    assert "NaN/inf" in rejected[2] and "float32[4]" in rejected[3]
    assert "positive number of samples" in rejected[6] and "cannot be read" in rejected[8]
    assert "not a finite number" in rejected[10]
    assert "differ from the others'" in rejected[12]


def test_plaintext_bad_evaluation_replies_are_left_out(task_identity):
    def evaluation(node, metrics):
        return _reply(node, RecordDict({"metrics": MetricRecord(metrics)}))

    replies = [
        evaluation(0, {"loss": 1.0, "accuracy": 0.5, "num-examples": 10, "partition-id": 0}),
        evaluation(1, {"loss": 3.0, "accuracy": 0.9, "num-examples": 30, "partition-id": 1}),
        evaluation(2, {"loss": float("inf"), "accuracy": 0.1, "num-examples": 5}),
        evaluation(3, {"loss": 1.0, "accuracy": 0.1, "num-examples": -4}),
    ]
    strategy = PlaintextFedAvg(Sampling())
    metrics = strategy.aggregate_evaluate(1, replies)
    assert metrics["accuracy"] == pytest.approx(0.8)  # (0.5*10 + 0.9*30) / 40
    assert set(strategy.round_facts(1).rejected) == {2, 3}


# -- ckks: an aggregate under another key ------------------------------------------------------
def test_aggregate_under_a_foreign_key_is_refused_and_the_server_reverts(task_identity, key_dir):
    """A rogue client encrypts under its own key: the sum is garbage to everyone else.

    The honest clients detect it (the weight slot), train on nothing and tell the server with
    ``AGGREGATE_REJECTED``; the server falls back on the last aggregate they accepted.
    """
    config = RunConfig(aggregation="ckks", key_dir=str(key_dir), num_clients=3, local_epochs=1)
    size = num_parameters(config)
    server = load_server_context(key_dir)
    encoding = load_scheme(config).encodings().update  # what the clients encrypt with
    strategy = CkksFedAvg(server, encoding, size, Sampling())

    # Round 1: clients start from the seed (empty broadcast) and reply honestly.
    round_one = [
        client_app.train_handler(
            _train_request(ArrayRecord(), pid + 1), client_context(config, pid)
        )
        for pid in range(2)
    ]
    rogue = encrypt_update(make_context(PRESET), encoding, np.zeros(size), 100.0)
    strategy.broadcast = ArrayRecord()  # what configure_train records: round 1 sends nothing
    corrupt, _ = strategy.aggregate_train(1, [*round_one, _reply(3, RecordDict({"arrays": rogue}))])
    assert corrupt is not None and len(corrupt) > 0

    # Round 2: every honest client refuses the corrupt sum instead of training on it.
    strategy.broadcast = corrupt
    refusals = [
        client_app.train_handler(_train_request(corrupt, pid + 1, 2), client_context(config, pid))
        for pid in range(3)
    ]
    assert all(r.has_error() and r.error.code == ReplyCode.AGGREGATE_REJECTED for r in refusals)
    fallback, _ = strategy.aggregate_train(2, refusals)
    assert fallback is not None and len(fallback) == 0  # round 1's broadcast: the seed model
    assert strategy.round_facts(2).summed == 0  # no new sum: nothing to add noise to


def test_client_with_no_training_record_refuses_with_a_code(task_identity, monkeypatch):
    empty = ClientData(*(np.empty((0, 1, 8, 8), np.float32), np.empty(0, np.int64)) * 2, [], [])
    monkeypatch.setattr(client_runtime, "client_data", lambda *args: empty)
    reply = client_app.train_handler(_train_request(state_arrays()), client_context(RunConfig(), 0))
    assert reply.has_error() and reply.error.code == ReplyCode.NO_TRAINING_DATA
    assert "no training record" in reply.error.reason


def state_arrays() -> ArrayRecord:
    from fedpriv.task import initial_state
    from fedpriv.wire import state_to_record

    return state_to_record(initial_state(RunConfig()))


# -- missing clients: the round is skipped, not the run ------------------------------------------
def _loop(tmp_path, grid, strategy, min_clients=2):
    rundir = RunDirectory(tmp_path / "run")
    rundir.create()
    history = History("plaintext")
    policy = RoundPolicy(min_clients=min_clients, node_wait=0.2)
    return RoundLoop(RecordingGrid(grid, rundir, False), strategy, rundir, history, policy)


def _run(tmp_path, grid, rounds=2, min_clients=2):
    loop = _loop(tmp_path, grid, PlaintextFedAvg(Sampling(minimum=1)), min_clients)
    final = loop.run(ArrayRecord({"w": Array(np.ones(3, np.float32))}), 1, rounds)
    return final, loop.history


def test_round_is_skipped_when_too_few_nodes_are_connected(task_identity, tmp_path, caplog):
    grid = FakeGrid([11], lambda m: pytest.fail("nothing may be sent"))
    with caplog.at_level(logging.WARNING, logger="flwr"):
        final, history = _run(tmp_path, grid)
    assert [r.skipped for r in history.rounds] == [
        "1 nodes connected, fewer than the minimum 2"
    ] * 2
    assert np.array_equal(final["w"].numpy(), np.ones(3, np.float32))  # the model is kept
    assert "round 1 skipped: 1 nodes connected" in caplog.text


def test_round_is_skipped_when_too_few_clients_reply(task_identity, tmp_path):
    def crash(message):
        return Message(Error(code=0, reason="crashed"), reply_to=message)

    final, history = _run(tmp_path, FakeGrid([11, 12, 13], crash), rounds=1)
    entry = history.rounds[0]
    assert entry.skipped == "0 of 3 clients replied, fewer than the minimum 2"
    assert entry.failed == {"11": "crashed", "12": "crashed", "13": "crashed"}
    assert RunDirectory(tmp_path / "run").checkpoint_rounds() == [1]


def test_refused_broadcast_reverts_the_model_in_the_round_loop(task_identity, tmp_path, key_dir):
    """Every client refuses the sum: the loop goes back to the last accepted aggregate."""
    encoding = UpdateEncoding(PRESET)
    strategy = CkksFedAvg(load_server_context(key_dir), encoding, 10, Sampling(minimum=1))
    accepted = ArrayRecord({"ct-00000": Array(np.zeros(1, np.float32))})
    strategy.accepted = accepted
    corrupt = ArrayRecord({"ct-00000": Array(np.ones(1, np.float32))})

    def refuse(message):
        return Message(
            Error(code=ReplyCode.AGGREGATE_REJECTED, reason="aggregate rejected"),
            reply_to=message,
        )

    loop = _loop(tmp_path, FakeGrid([11, 12, 13], refuse), strategy)
    final = loop.run(corrupt, 1, 2)
    assert final is accepted
    first = loop.history.rounds[0]
    assert first.skipped == "3 clients refused the aggregate they were sent"
    assert first.aggregate_rejected_by == [11, 12, 13]
    stored = json.loads((loop.rundir.path / "history.json").read_text())["rounds"][0]
    assert stored["aggregate_rejected_by"] == [11, 12, 13]
    assert np.array_equal(loop.rundir.read_checkpoint(1)["arrays"]["ct-00000"].numpy(), [0.0])


def _history_rounds(path: Path) -> int:
    try:
        return len(json.loads((path / "history.json").read_text())["rounds"])
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.slow
def test_killed_run_resumes_to_the_uninterrupted_model(tmp_path):
    """Kill a ckks run (SIGKILL, Ray included) after round 2 of 4; resume; same model."""
    import tomli_w

    from fedpriv.simulation import run_simulation

    # One federation, run through the CLI (to be killed) and in-process (uninterrupted).
    config = RunConfig(aggregation="ckks", num_clients=3, num_server_rounds=4, **EQUIVALENCE)
    experiment = tmp_path / "experiment.toml"
    experiment.write_text(tomli_w.dumps({"run": config.to_flower()}))
    killed = tmp_path / "killed"
    fedpriv = str(Path(sys.executable).with_name("fedpriv"))
    proc = subprocess.Popen(
        [fedpriv, "run", "--config", str(experiment), "--out", str(killed)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    while _history_rounds(killed) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, "round 2 never finished"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the server, its Ray and every virtual client
    proc.wait(timeout=30)
    assert _history_rounds(killed) < 4 and not (killed / "model.pt").exists()

    resumed = subprocess.run(
        [fedpriv, "run", "--resume", str(killed)], cwd=ROOT, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    history = json.loads((killed / "history.json").read_text())
    assert [r["round"] for r in history["rounds"]] == [1, 2, 3, 4]

    straight = run_simulation(config.replace(out_dir=str(tmp_path / "straight")))
    a = state_from_bytes(RunDirectory(killed).model_path.read_bytes())
    b = state_from_bytes(RunDirectory(straight).model_path.read_bytes())
    # Two ckks runs differ by their own fresh encryption noise (about 1e-6 a round), which four
    # rounds of training carry on: 1.3e-5 seen once in CI, below 1e-6 in most runs. A resume
    # that lost or repeated a round would differ by a whole round's update (about 1e-1).
    assert max(float(np.abs(a[k] - b[k]).max()) for k in a) < 1e-4
    load_state(new_model(config), a)  # a loadable model


def test_a_client_that_never_answers_counts_as_failed_after_the_round_timeout(
    task_identity, tmp_path
):
    """A node that heartbeats but never replies (its SuperExec gone) cannot hold the run."""

    def silent_13(message):
        if message.metadata.dst_node_id == 13:
            return None  # never arrives
        return Message(RecordDict({"arrays": message.content["arrays"]}), reply_to=message)

    config = RunConfig(round_timeout=0.5, min_available_clients=2, num_clients=3)
    policy = RoundPolicy.from_config(config)
    assert policy.timeout == 0.5
    rundir = RunDirectory(tmp_path / "run")
    rundir.create()
    grid = RecordingGrid(FakeGrid([11, 12, 13], silent_13), rundir, False)
    loop = RoundLoop(grid, PlaintextFedAvg(Sampling(minimum=1)), rundir, History("plaintext"),
                     RoundPolicy(min_clients=2, node_wait=0.2, timeout=policy.timeout))  # fmt: skip
    started = time.monotonic()
    loop.run(ArrayRecord({"w": Array(np.ones(3, np.float32))}), 1, 1)
    assert time.monotonic() - started < 5
    (entry,) = loop.history.rounds
    assert entry.skipped is None and sorted(entry.clients) == [11, 12]
    with pytest.raises(ConfigError, match="round-timeout must be > 0"):
        RunConfig(round_timeout=0)
