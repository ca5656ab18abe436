"""The threshold protocol between a real server session and real client codecs, over a fake grid:
dropouts between upload and decryption, and bad decryption shares."""

import logging
import stat
from pathlib import Path

import numpy as np
import pytest
from flwr.app import ConfigRecord, Error, Message, RecordDict
from threshold_support import NODES, ThresholdFederation

from fedpriv.parameters import state_to_vector
from fedpriv.schemes.threshold import messages as protocol
from fedpriv.schemes.threshold.server import SetupFailed
from fedpriv.wire import record_to_state


@pytest.fixture
def federation(tmp_path, task_identity):
    fed = ThresholdFederation(tmp_path)
    fed.session.setup(NODES, 0.0)
    return fed


@pytest.fixture
def passive_federation(tmp_path, task_identity):
    """The passive protocol (``threshold-authenticated = false``): the server may ask a
    smaller decrypting set again in the same round."""
    fed = ThresholdFederation(tmp_path, authenticated=False)
    fed.session.setup(NODES, 0.0)
    return fed


def test_setup_gives_every_party_a_share_of_every_secret_and_the_same_key(federation):
    from fedpriv.schemes.threshold.party import read_held

    setup = federation.session.setup_state
    assert setup.parties == {node: i + 1 for i, node in enumerate(NODES)}
    assert setup.threshold == 3
    for codec in federation.codecs.values():
        state = codec.node.state.config_records["fedpriv-threshold"]
        assert {"dealers", "held", "public-key", "secret", "channel"} <= set(state)
        assert list(state["dealers"]) == [1, 2, 3, 4, 5]
    # In simulation each party's Shamir shares are kept in the run's key folder, 0600.
    for party in range(1, 6):
        path = Path(federation.config.key_dir) / "threshold" / f"party-{party}.npz"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        crs, held = read_held(path)
        assert len(crs) == 64 and sorted(held) == [1, 2, 3, 4, 5]


def test_a_round_decrypts_the_fedavg_of_every_upload(federation):
    arrays, _ = federation.round()
    mean = state_to_vector(record_to_state(arrays))
    assert np.abs(mean - federation.fedavg()).max() < 1e-6
    assert federation.strategy.round_facts(1).summed == 5


def _drop(reply, message):
    return None


def test_n_minus_t_parties_may_drop_between_upload_and_decryption(passive_federation):
    federation = passive_federation
    for node in (12, 15):  # n - t = 2
        federation.misbehave[(node, protocol.DECRYPT)] = _drop
    arrays, _ = federation.round()
    # All five uploads are in the sum; three parties decrypt it (asked again as a set of 3).
    mean = state_to_vector(record_to_state(arrays))
    assert np.abs(mean - federation.fedavg()).max() < 1e-6


def test_authenticated_parties_answer_one_decrypting_set_per_round(federation):
    """A party that drops after uploading costs the round: asking the others again would
    make them give a second share of the same sum (the smudging bound is per share)."""
    federation.misbehave[(12, protocol.DECRYPT)] = _drop
    arrays, _ = federation.round()
    assert arrays is None
    asked = [node for node, stage in federation.asked if stage == protocol.DECRYPT]
    assert sorted(asked) == NODES  # asked once each
    # The next round decrypts as usual.
    federation.misbehave.clear()
    arrays, _ = federation.round(server_round=2)
    assert arrays is not None


def test_more_dropouts_keep_the_model_with_one_log_line(federation, caplog):
    for node in (12, 13, 15):
        federation.misbehave[(node, protocol.DECRYPT)] = _drop
    with caplog.at_level(logging.WARNING, logger="flwr"):
        arrays, _ = federation.round()
    assert arrays is None
    assert federation.strategy.round_facts(1).unchanged == (
        "fewer than 3 parties gave decryption shares"
    )
    assert [r for r in caplog.records if "decryption share" in r.getMessage()] == []


def _truncate(reply, message):
    record = reply.content.array_records[protocol.POLYS]
    first = record[protocol.POLY_KEY.format(0)]
    from flwr.app import Array

    record[protocol.POLY_KEY.format(0)] = Array(
        dtype=first.dtype, shape=tuple(first.shape), stype=first.stype, data=first.data[:-8]
    )
    return reply


def _other_round(reply, message):
    reply.content.config_records[protocol.CONFIG]["round"] = 7
    return reply


def _error(reply, message):
    return Message(Error(code=4603, reason="refused"), reply_to=message)


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (_truncate, "bytes, expected"),
        (_other_round, "a share for round 7"),
        (_error, "error reply: refused"),
    ],
)
def test_bad_shares_are_rejected_and_the_round_goes_on(passive_federation, caplog, edit, reason):
    federation = passive_federation
    federation.misbehave[(13, protocol.DECRYPT)] = edit
    with caplog.at_level(logging.WARNING, logger="flwr"):
        arrays, _ = federation.round()
    facts = federation.strategy.round_facts(1)
    assert reason in facts.rejected[13]
    assert "node 13's decryption share rejected" in caplog.text
    mean = state_to_vector(record_to_state(arrays))
    assert np.abs(mean - federation.fedavg()).max() < 1e-6


def test_a_share_from_a_node_that_did_not_upload_is_rejected(passive_federation, caplog):
    """Node 14's upload is lost: it is not asked to decrypt, and a share claiming to come
    from it (node 13's reply, relabelled) is rejected; the other four decrypt."""
    federation = passive_federation
    federation.misbehave[(14, "train")] = _drop

    def relabel(reply, message):
        reply.metadata.__dict__["_src_node_id"] = 14
        return reply

    federation.misbehave[(13, protocol.DECRYPT)] = relabel
    with caplog.at_level(logging.WARNING, logger="flwr"):
        arrays, _ = federation.round()
    assert (14, protocol.DECRYPT) not in federation.asked
    assert "not asked" in federation.strategy.round_facts(1).rejected[14]
    # 13's real share never came: the set {11, 12, 15} is asked again and decrypts.
    mean = state_to_vector(record_to_state(arrays))
    assert np.abs(mean - federation.fedavg([11, 12, 13, 15])).max() < 1e-6


def test_setup_fails_naming_the_stage_when_too_few_parties_remain(tmp_path, task_identity):
    fed = ThresholdFederation(tmp_path)
    for node in (11, 12, 13):
        fed.misbehave[(node, protocol.SHARE)] = _drop
    with pytest.raises(SetupFailed, match="2 parties dealt their shares"):
        fed.session.setup(NODES, 0.0)


def test_a_dealer_that_drops_is_left_out_of_the_key(tmp_path, task_identity):
    fed = ThresholdFederation(tmp_path)
    fed.misbehave[(15, protocol.SHARE)] = _drop
    setup = fed.session.setup(NODES, 0.0)
    assert sorted(setup.parties) == [11, 12, 13, 14]
    arrays, _ = fed.round()
    # Node 15 holds no collective key: it is not trained, and the four parties decrypt.
    assert (15, "train") not in fed.asked
    mean = state_to_vector(record_to_state(arrays))
    assert np.abs(mean - fed.fedavg([11, 12, 13, 14])).max() < 1e-6


def test_codec_refuses_a_malformed_request(federation):
    codec = federation.codecs[11]
    request = Message(
        content=RecordDict({protocol.CONFIG: ConfigRecord({"stage": "decrypt", "round": 1})}),
        dst_node_id=11,
        message_type=protocol.MESSAGE_TYPE,
    )
    from fedpriv.errors import ConfigError

    with pytest.raises(ConfigError, match="decrypting set"):
        codec.query(request)
    bad_stage = Message(
        content=RecordDict({protocol.CONFIG: ConfigRecord({"stage": "steal"})}),
        dst_node_id=11,
        message_type=protocol.MESSAGE_TYPE,
    )
    with pytest.raises(ConfigError, match="unknown threshold stage"):
        codec.query(bad_stage)
