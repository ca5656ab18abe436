"""A server that deviates, against threshold CKKS: authenticated, every manipulation is refused.

The server relays and combines everything in this protocol, so it may substitute what it
relays (a channel key, the collective key, part of the roster), ask any party any
question (a second decryption in a round, a decrypting set of one, a sum of one upload)
and alter the uploads it names. Played against real parties (``ThresholdCodec``) through a
real server session, with ``c = 0`` colluders: authenticated (the default), each is refused
and the server reads nothing individual; passive (``threshold-authenticated = false``), the
decryption oracle and the channel-key substitution hand it one client's update or every
share dealt to a party, so these tests can fail. A substituted collective key gains it
nothing under either protocol: parties encrypt under their own secrets. The last test adds
colluders: up to the bound the scheme states (``c <= min(t - 1, m - 2)``) the target stays
hidden, one beyond it the server reads the target's update from a sum the protocol lets
it decrypt. Every test runs twice: the parties answer as fedpriv's own ClientApp does, and
as a Flower app's ClientApp behind ``fedpriv.flower.threshold_mod`` (the same party code,
reached through the mod).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from flwr.app import ConfigRecord, Message, RecordDict
from threshold_support import NODES, ThresholdFederation

from fedpriv.crypto.channels import new_private_key, open_from, public_key
from fedpriv.crypto.signing import digest
from fedpriv.errors import AggregateRejectedError, ConfigError, CryptoError
from fedpriv.parameters import state_to_vector, vector_to_state
from fedpriv.schemes.threshold import messages as protocol
from fedpriv.schemes.threshold.messages import SignedUpload
from fedpriv.schemes.threshold.party import SEALED
from fedpriv.schemes.threshold.server import SetupFailed
from fedpriv.training import LocalUpdate
from fedpriv.wire import record_to_state

TARGET = NODES[1]
REFUSALS = (ConfigError, CryptoError)


@pytest.fixture(autouse=True, params=["fedpriv-app", "threshold-mod"])
def party_client(request, monkeypatch):
    """Which ClientApp the parties are: fedpriv's own, or a Flower app behind the mod."""
    monkeypatch.setattr(ThresholdFederation, "via_mod", request.param == "threshold-mod")
    return request.param


def _setup(tmp_path, authenticated: bool) -> ThresholdFederation:
    federation = ThresholdFederation(tmp_path, authenticated=authenticated)
    federation.session.setup(NODES, 0.0)
    return federation


def _copy(message: Message, config: dict | None = None, polys=None) -> Message:
    """The same request with some of its ConfigRecord (or its polynomials) replaced."""
    content = RecordDict(dict(message.content.items()))
    record = ConfigRecord(dict(content.config_records[protocol.CONFIG].items()))
    record.update(config or {})
    content[protocol.CONFIG] = record
    if polys is not None:
        content[protocol.POLYS] = polys
    copy = Message(
        content=content,
        dst_node_id=message.metadata.dst_node_id,
        message_type=message.metadata.message_type,
    )
    copy.metadata.__dict__["_message_id"] = message.metadata.message_id
    return copy


def _parsed(federation, replies):
    """Node -> (parsed upload, signed evidence) as the server holds them."""
    strategy = federation.strategy
    out = {}
    for reply in replies:
        upload = protocol_upload(strategy, reply)
        record = reply.content.array_records["arrays"]
        evidence = (
            strategy._evidence(reply, record) if federation.config.threshold_authenticated else None
        )
        out[reply.metadata.src_node_id] = (upload, evidence)
    return out


def protocol_upload(strategy, reply):
    from fedpriv.crypto.packing import deserialize_update

    record = reply.content.array_records["arrays"]
    return deserialize_update(record, strategy.wire, strategy.wire.preset, strategy.update_size)


@pytest.mark.parametrize("authenticated", [True, False], ids=["authenticated", "passive"])
def test_decrypt_one_second_request_of_a_round(tmp_path, task_identity, authenticated):
    """After the round's honest decryption, the server asks the same parties for shares of
    the target's own upload."""
    federation = _setup(tmp_path, authenticated)
    replies = federation.uploads(1)
    uploads = _parsed(federation, replies)
    federation.strategy.aggregate_train(1, replies)  # the honest decryption of the sum
    target, evidence = uploads[TARGET]
    opened, _ = federation.strategy._decrypt(
        1,
        target,
        [TARGET],
        None if evidence is None else {TARGET: evidence},
        decrypting=sorted(uploads),
    )
    if authenticated:
        assert opened is None  # every party refused a second share in round 1
        return
    model, weight = opened
    # Exactly the target's update, to the preset's precision (one upload's noise).
    np.testing.assert_allclose(state_to_vector(model), federation.models[TARGET], atol=1e-5)
    assert weight == federation.weights[TARGET]


def test_a_sum_of_one_upload_or_of_altered_uploads_is_refused(tmp_path, task_identity):
    """The first request of a round, naming only the target's upload (the sum of one), or
    the others' signatures over the target's upload: no party gives a share."""
    federation = _setup(tmp_path, True)
    replies = federation.uploads(1)
    uploads = _parsed(federation, replies)
    target, evidence = uploads[TARGET]
    opened, _ = federation.strategy._decrypt(
        1, target, [TARGET], {TARGET: evidence}, decrypting=sorted(uploads)
    )
    assert opened is None
    forged = {
        node: SignedUpload(e.partition, e.signature, evidence.upload)
        for node, (_, e) in uploads.items()
    }
    opened, _ = federation.strategy._decrypt(1, target, sorted(uploads), forged)
    assert opened is None
    # The honest request of the same round still decrypts (nothing was given before).
    arrays, _ = federation.strategy.aggregate_train(1, replies)
    assert arrays is not None


def test_a_decrypting_set_the_party_should_not_serve_is_refused(tmp_path, task_identity):
    federation = _setup(tmp_path, True)
    replies = federation.uploads(1)
    uploads = _parsed(federation, replies)
    codec = federation.codecs[NODES[0]]
    listed = sorted(uploads)
    config = {
        "stage": protocol.DECRYPT,
        "round": 1,
        "upload-partitions": [uploads[n][1].partition for n in listed],
        "upload-signatures": [uploads[n][1].signature for n in listed],
        "upload-digests": [uploads[n][1].upload for n in listed],
    }
    for parties, reason in (([1], "is not 3 or more"), ([2, 3, 4], "is not 3 or more")):
        request = Message(
            content=RecordDict({protocol.CONFIG: ConfigRecord({**config, "parties": parties})}),
            dst_node_id=NODES[0],
            message_type=protocol.MESSAGE_TYPE,
        )
        with pytest.raises(CryptoError, match=reason):
            codec.query(request)


@pytest.mark.parametrize("authenticated", [True, False], ids=["authenticated", "passive"])
def test_channel_key_substitution(tmp_path, task_identity, authenticated):
    """The server relays its own X25519 key as party 2's: passive, the shares dealt to party
    2 open under the server's key; authenticated, every party refuses to deal."""
    federation = ThresholdFederation(tmp_path, authenticated=authenticated)
    server_private = new_private_key()
    sealed_for_2 = []

    def substitute(message):
        keys = list(message.content.config_records[protocol.CONFIG]["channel-keys"])
        keys[1] = public_key(server_private)
        return _copy(message, {"channel-keys": keys})

    def keep(reply, message):
        if not reply.has_error():
            config = reply.content.config_records[protocol.CONFIG]
            sealed_for_2.append((config["party"], list(config["sealed"])[1]))
        return reply

    for node in NODES:
        if node != NODES[1]:
            federation.tamper[(node, protocol.SHARE)] = substitute
            federation.misbehave[(node, protocol.SHARE)] = keep
    if authenticated:
        with pytest.raises(SetupFailed):
            federation.session.setup(NODES, 0.0)
        assert sealed_for_2 == []
        return
    # The server reads the shares as they pass (the setup then fails for party 2, which
    # cannot open them: a full man in the middle would re-seal them; reading is the point).
    with pytest.raises(SetupFailed):
        federation.session.setup(NODES, 0.0)
    crs = federation.codecs[NODES[0]].node.state.config_records["fedpriv-threshold"]["crs"]
    opened = 0
    for sender, box in sealed_for_2:
        state = federation.codecs[NODES[sender - 1]].node.state.config_records["fedpriv-threshold"]
        sender_public = public_key(state["channel"])
        context = SEALED.format(sender, 2, hashlib.sha256(crs).hexdigest()).encode()
        share = open_from(server_private, sender_public, box, context)
        opened += len(share) > 0
    assert opened == len(NODES) - 1  # every share dealt to party 2 read by the server


@pytest.mark.parametrize("authenticated", [True, False], ids=["authenticated", "passive"])
def test_collective_key_substitution(tmp_path, task_identity, authenticated):
    """The server delivers a public key of its own: authenticated, every party refuses it;
    passive, the parties accept it, and it decrypts nothing: they encrypt their uploads under
    their own secrets, not under the collective key (which only commits the setup)."""
    federation = ThresholdFederation(tmp_path, authenticated=authenticated)
    ckks = federation.strategy.wire.ckks
    holder = {}

    def substitute(message):
        crs = None
        for codec in federation.codecs.values():
            crs = codec.node.state.config_records["fedpriv-threshold"]["crs"]
        a = ckks.common_random_polynomial(crs)
        if "share" not in holder:
            holder["share"] = ckks.key_share(a)
        polys = protocol.polys_record(federation.strategy.wire, [holder["share"].p0])
        return _copy(message, polys=polys)

    for node in NODES:
        federation.tamper[(node, protocol.DELIVER)] = substitute
    if authenticated:
        with pytest.raises(SetupFailed):
            federation.session.setup(NODES, 0.0)
        return
    # Every party accepted the key (the honest session's own digest check fails; a
    # deviating server skips it) and uploads in round 1.
    with pytest.raises(SetupFailed):
        federation.session.setup(NODES, 0.0)
    codec = federation.codecs[TARGET]
    request = Message(
        content=RecordDict({"config": ConfigRecord({"server-round": 1})}),
        dst_node_id=TARGET,
        message_type="train",
    )
    state = vector_to_state(federation.models[TARGET], federation.template)
    update = LocalUpdate(state, federation.template, federation.weights[TARGET], 0.1)
    reply = Message(codec.train_reply(request, update), reply_to=request)
    upload = protocol_upload(federation.strategy, reply)
    payload_size = federation.strategy.update_size
    layout = [ckks.n] * (payload_size // ckks.n) + ([payload_size % ckks.n] or [])
    crs = codec.node.state.config_records["fedpriv-threshold"]["crs"]
    common = ckks.round_polynomials(crs, 1, len(upload))
    decrypted = np.concatenate(
        [
            ckks.decrypt_with_secret(c.c0, common[k], holder["share"].secret, n)
            for k, (c, n) in enumerate(zip(upload, [x for x in layout if x], strict=True))
        ]
    )
    with pytest.raises(AggregateRejectedError, match="not a sum of sample counts"):
        federation.strategy.encoding.mean(decrypted, state_to_vector(federation.template))
    assert np.abs(decrypted).max() > 1e6  # garbage


def test_a_transcript_signed_by_another_party_is_refused(tmp_path, task_identity):
    """The consistency round: a dealer's transcript signature replaced (by another party's
    signature of the same transcript) makes the receiving party refuse the shares."""
    federation = ThresholdFederation(tmp_path)

    def swap(message):
        config = message.content.config_records[protocol.CONFIG]
        signatures = list(config["transcript-signatures"])
        signatures[2] = signatures[3]
        return _copy(message, {"transcript-signatures": signatures})

    federation.tamper[(NODES[0], protocol.DELIVER)] = swap
    federation.session.setup(NODES, 0.0)
    # Party 1 refused to confirm: the key is held by the four others only.
    assert NODES[0] not in federation.session.setup_state.parties


def test_different_rosters_for_different_parties_leave_that_party_out(tmp_path, task_identity):
    """Party 1 is shown the key contributions without party 5's: it deals to a roster the
    others do not share, the server cannot deliver its shares, and the setup restarts
    without it; every remaining party holds one and the same key."""
    federation = ThresholdFederation(tmp_path)

    def drop_last(message):
        config = message.content.config_records[protocol.CONFIG]
        keep = len(list(config["parties"])) - 1
        polys = protocol.read_polys(
            federation.strategy.wire, message.content, keep + 1, "key shares"
        )[:keep]
        changes = {
            key: list(config[key])[:keep]
            for key in ("parties", "channel-keys", "partitions", "signatures")
        }
        return _copy(message, changes, protocol.polys_record(federation.strategy.wire, polys))

    federation.tamper[(NODES[0], protocol.SHARE)] = drop_last
    setup = federation.session.setup(NODES, 0.0)
    assert NODES[0] not in setup.parties
    keys = {
        bytes(federation.codecs[n].node.state.config_records["fedpriv-threshold"]["public-key"])
        for n in setup.parties
    }
    assert len(keys) == 1


def test_uploads_are_signed_and_an_honest_round_decrypts(tmp_path, task_identity):
    federation = _setup(tmp_path, True)
    replies = federation.uploads(1)
    for reply in replies:
        assert reply.content.config_records[protocol.UPLOAD]["signature"]
    arrays, _ = federation.strategy.aggregate_train(1, replies)
    mean = state_to_vector(record_to_state(arrays))
    assert np.abs(mean - federation.fedavg()).max() < 1e-6
    assert digest(b"") != digest(b"x")  # the digests the signatures cover are SHA-256


@pytest.mark.parametrize("colluders", [1, 2])
def test_colluders_within_the_bound_hide_the_target_and_beyond_it_do_not(
    tmp_path, task_identity, colluders
):
    """The bound ``holds_against`` states, tested at its edge (t = 3, m = 3 here, so
    c <= min(t - 1, m - 2) = 1). The server trains only the target, ``c`` colluders and
    ``3 - 1 - c`` honest parties, so the round's sum holds exactly ``m = 3`` signed uploads;
    every party (the honest target too) gives its one share for it, as the protocol allows.
    The colluders hand the server their own updates; it subtracts them. With c = 1 the rest
    mixes the target with another honest update; with c = 2 (beyond the bound) it is the
    target's update, exactly: the bound is tight, not an artefact of the test."""
    from fedpriv.schemes.threshold.scheme import ThresholdScheme

    federation = _setup(tmp_path, True)
    assert ThresholdScheme(federation.config).holds_against() == "a deviating server, c <= 1"
    colluding = [n for n in NODES if n != TARGET][:colluders]
    honest = [n for n in NODES if n not in (TARGET, *colluding)][: 3 - 1 - colluders]
    chosen = {TARGET, *colluding, *honest}
    replies = [r for r in federation.uploads(1) if r.metadata.src_node_id in chosen]
    arrays, _ = federation.strategy.aggregate_train(1, replies)
    assert arrays is not None  # a sum of m signed uploads decrypts, as it should
    reference = state_to_vector(record_to_state(federation.arrays))
    total = sum(federation.weights[n] for n in chosen)
    residual = (state_to_vector(record_to_state(arrays)) - reference) * total
    for node in colluding:  # what the colluders tell the server about their own uploads
        residual -= federation.weights[node] * (federation.models[node] - reference)
    guess = reference + residual / federation.weights[TARGET]
    error = np.abs(guess - federation.models[TARGET]).max()
    if colluders <= 1:
        assert error > 1e-2  # still mixed with an honest update
    else:
        assert error < 1e-5  # c > m - 2: the target's update, read off the sum
