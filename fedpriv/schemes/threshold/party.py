"""A party of threshold CKKS: plaintext models in, encrypted updates out, the protocol's queries.

The key setup is Mouchet, Bertrand and Hubaux's t-of-n multiparty CKKS (JoC 2023, ePrint
2022/780: collective public key from the parties' shares over a common random polynomial,
Shamir re-sharing of the secret). Authenticated (the default), each step a server could
exploit is checked here, before anything secret is used (DESIGN.md, "Active security"):
signed key contributions, the collective key computed by each party itself, the dealers'
signatures on the transcript each saw (Bonawitz et al., CCS 2017, consistency round), one
upload per round (the round fixes the common ``a`` it encrypts over), and one decryption
share per round, only for a sum of enough uploads whose signatures the party checked.

One module: a party's codec answers every stage of the protocol from one persisted state.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from flwr.app import Message, RecordDict

from fedpriv.config import RunConfig
from fedpriv.crypto.channels import new_private_key, open_from, public_key, seal_to
from fedpriv.crypto.encoding import UpdateEncoding
from fedpriv.crypto.modq import sum_mod
from fedpriv.crypto.packing import encrypt_update, expected_layout
from fedpriv.crypto.shamir import lagrange_at_zero, scale_rows, share
from fedpriv.crypto.signing import Roster, SigningKey, digest, load_identity, load_roster
from fedpriv.crypto.threshold import ThresholdCkks
from fedpriv.crypto.thresholdwire import ThresholdWire, UploadKey
from fedpriv.errors import ConfigError, CryptoError, KeyMaterialError
from fedpriv.federation.ledger import Ledger, Step
from fedpriv.parameters import State, state_to_vector
from fedpriv.schemes.base import ClientCodec, Evaluation, Node
from fedpriv.schemes.plaintext import PlaintextCodec
from fedpriv.schemes.threshold.messages import (
    UPLOAD,
    Contribution,
    DecryptReply,
    DecryptRequest,
    DeliverReply,
    DeliverRequest,
    KeygenReply,
    KeygenRequest,
    ShareReply,
    ShareRequest,
    Stage,
    UploadSignature,
    encoding,
    keygen_statement,
    stage_of,
    transcript_signed,
    transcript_statement,
    upload_digest,
    upload_statement,
)
from fedpriv.schemes.threshold.state import PartyState, poly_bytes, poly_from
from fedpriv.task import initial_state
from fedpriv.training import LocalUpdate
from fedpriv.wire import server_round

# Where a client also writes its Shamir share when its node has a key directory: in
# simulation that is the run's, so that coalitions of t or more clients can be played after
# the run; in a deployment each node's own.
SHARES_DIR = "threshold"
SEALED = "fedpriv threshold share {} -> {} crs {}"


def sealing_context(sender: int, recipient: int, crs: bytes) -> bytes:
    """The associated data of a share sealed from ``sender`` to ``recipient`` in one setup."""
    return SEALED.format(sender, recipient, hashlib.sha256(crs).hexdigest()).encode()


def lagrange_for(party: int, points: list[int], primes: list[int]) -> list[int]:
    """A party's Lagrange coefficient (per prime) for the decrypting set ``points``."""
    if party not in points:
        raise ConfigError(f"party {party} is not in the decrypting set {points}")
    return lagrange_at_zero(points, primes)[party]


@dataclass(frozen=True)
class PartyParams:
    """What a party must agree on with the server and the other parties.

    Attributes
    ----------
    threshold : int
        Parties needed to decrypt (a key setup asking for another is refused).
    encoding : UpdateEncoding
        How an upload lays out its drift and weight (its preset is the threshold preset).
    authenticated : bool
        Signed key setup, signed uploads, one decryption share a round for a verified sum.
    num_values : Callable[[], int]
        The model's parameter count (what a decryption share covers).

    """

    threshold: int
    encoding: UpdateEncoding
    authenticated: bool
    num_values: Callable[[], int]

    def __post_init__(self) -> None:
        if self.threshold < 1:
            raise ConfigError(f"the decryption threshold must be >= 1, got {self.threshold}")

    @classmethod
    def of(cls, config: RunConfig) -> PartyParams:
        """A fedpriv run's parameters (the model's size from its seed's initial model)."""
        return cls(
            config.decryption_threshold,
            encoding(config),
            config.threshold_authenticated,
            lambda: state_to_vector(initial_state(config)).size,
        )


class ThresholdCodec(ClientCodec):
    """A party: plaintext models in, encrypted updates out, and the protocol's queries."""

    def __init__(self, params: PartyParams, node: Node) -> None:
        self.params = params
        self.node = node
        self.plain = PlaintextCodec(node)
        self.preset = params.encoding.preset
        self.ckks = ThresholdCkks(self.preset)
        self.shape = (len(self.ckks.primes), self.ckks.n)
        self.encoding = params.encoding
        self.wire = ThresholdWire(self.ckks)
        self.authenticated = params.authenticated

    # -- state -------------------------------------------------------------------------------
    def _party(self) -> PartyState:
        return PartyState.load(self.node.state)

    def _upload_wire(self, server_round: int) -> ThresholdWire:
        """The wire with this party's key for its upload of ``server_round``."""
        try:
            party = self._party()
        except CryptoError as err:
            raise KeyMaterialError(f"no threshold key on this node: {err}") from err
        if not party.dealt:
            raise KeyMaterialError("no threshold key on this node: the key setup did not reach it")
        key = UploadKey(poly_from(party.secret, self.shape), party.crs, server_round)
        return ThresholdWire(self.ckks, key)

    def _identity(self) -> SigningKey:
        return load_identity(self.node.key_dir, self.node.partition_id)

    def _roster(self) -> Roster:
        return load_roster(self.node.key_dir)

    # -- the usual messages -----------------------------------------------------------------
    def read(self, msg: Message) -> tuple[State, int]:
        """The global model, in plaintext (the server reads each aggregate)."""
        return self.plain.read(msg)

    def train_reply(self, msg: Message, update: LocalUpdate) -> RecordDict:
        """The update's drift from the broadcast model, weighted, under this party's secret.

        Once per round (the node's ledger), in either protocol: the round fixes the common
        ``a`` the upload is encrypted over, and two uploads over one ``a`` would give away
        their difference. Authenticated, signed (the upload's digest under this party's
        identity), so that a decrypting party can tell who uploaded in the round.
        """
        current = server_round(msg.content)
        Ledger.record_answer(self.node.state, Step.TRAIN, current)
        wire = self._upload_wire(current)
        record = encrypt_update(
            wire,
            self.encoding,
            state_to_vector(update.state),
            update.weight,
            state_to_vector(update.start),
        )
        content = RecordDict({"arrays": record})
        if not self.authenticated:
            return content
        signature = self._identity().sign(
            upload_statement(
                msg.metadata.run_id, current, self.node.partition_id, upload_digest(record)
            )
        )
        content[UPLOAD] = UploadSignature(self.node.partition_id, current, signature).to_record()
        return content

    def evaluate_reply(self, msg: Message, evaluation: Evaluation) -> RecordDict:
        """Metrics in plaintext, as under SecAgg+ (the model they score is the server's)."""
        return self.plain.evaluate_reply(msg, evaluation)

    # -- the protocol -----------------------------------------------------------------------
    def query(self, msg: Message) -> RecordDict:
        """Answer one stage of the protocol (:mod:`fedpriv.schemes.threshold.messages`).

        Raises
        ------
        ConfigError, CiphertextFormatError, CryptoError
            If the request is malformed or does not fit this node's state.

        """
        stage = stage_of(msg)
        if stage == Stage.KEYGEN:
            return self._keygen(msg, KeygenRequest.from_record(msg.content, self.wire))
        if stage == Stage.SHARE:
            request = ShareRequest.from_record(msg.content, self.wire, self.authenticated)
            return self._share(msg, request)
        if stage == Stage.DELIVER:
            delivered = DeliverRequest.from_record(msg.content, self.wire, self.authenticated)
            return self._deliver(msg, delivered)
        if stage == Stage.DECRYPT:
            asked = DecryptRequest.from_record(msg.content, self.wire, self.authenticated)
            return self._decrypt(msg, asked)
        raise ConfigError(f"unknown threshold stage {stage!r}")

    def _keygen(self, msg: Message, request: KeygenRequest) -> RecordDict:
        if request.threshold != self.params.threshold:
            raise ConfigError(
                f"the server asks for threshold {request.threshold}, the run's is "
                f"{self.params.threshold}"
            )
        key_share = self.ckks.key_share(self.ckks.common_random_polynomial(request.crs))
        channel = new_private_key()
        # A new setup (or a restarted one) starts the party afresh.
        party = PartyState(
            request.party, request.threshold, request.crs, poly_bytes(key_share.secret), channel
        )
        signed = None
        if self.authenticated:
            # The contribution, signed: a server that substitutes a key share or a channel
            # key (to open the shares dealt to it) is caught by every party.
            party.partition = self.node.partition_id
            party.own_p0 = digest(self.wire.write_polynomial(key_share.p0))
            statement = keygen_statement(
                msg.metadata.run_id,
                request.crs,
                request.party,
                self.node.partition_id,
                party.own_p0,
                public_key(channel),
            )
            signed = Contribution(self.node.partition_id, self._identity().sign(statement))
        party.save(self.node.state)
        reply = KeygenReply(request.party, key_share.p0, public_key(channel), signed)
        return reply.to_record(self.wire)

    def _share(self, msg: Message, request: ShareRequest) -> RecordDict:
        party = self._party()
        if request.parties.count(party.party) != 1:
            raise ConfigError("share: the roster does not list this party once with a key")
        signature = None
        if self.authenticated:
            signature = self._verify_contributions(msg, party, request)
        party.roster, party.roster_keys = request.parties, request.channel_keys
        dealt = share(
            poly_from(party.secret, self.shape), party.threshold, request.parties, self.ckks.primes
        )
        sealed = [
            seal_to(
                party.channel,
                key,
                self.wire.write_polynomial(dealt[recipient]),
                sealing_context(party.party, recipient, party.crs),
            )
            for recipient, key in zip(request.parties, request.channel_keys, strict=True)
        ]
        party.save(self.node.state)
        return ShareReply(party.party, request.parties, sealed, signature).to_record(self.wire)

    def _verify_contributions(
        self, msg: Message, party: PartyState, request: ShareRequest
    ) -> bytes:
        """Check every party's signed key share and channel key; sign the transcript.

        Each party computes the collective key itself from the verified contributions, and
        signs the transcript it saw (Bonawitz et al. 2017's consistency round): in the next
        stage it accepts shares only from dealers who signed the same transcript, so a
        server that shows different parties different rosters or keys is caught.
        """
        assert request.contributions is not None and request.p0s is not None
        partitions = [c.partition for c in request.contributions]
        if len(set(partitions)) != len(partitions):
            raise ConfigError("share: a partition contributes twice")
        roster = self._roster()
        run = msg.metadata.run_id
        digests = [digest(self.wire.write_polynomial(p0)) for p0 in request.p0s]
        for index, contribution in enumerate(request.contributions):
            signed = keygen_statement(
                run,
                party.crs,
                request.parties[index],
                contribution.partition,
                digests[index],
                request.channel_keys[index],
            )
            if not roster.verify(contribution.partition, contribution.signature, signed):
                raise CryptoError(
                    f"share: party {request.parties[index]}'s key contribution is not signed "
                    f"by partition {contribution.partition} (substituted key share or channel "
                    "key)"
                )
        own = request.parties.index(party.party)
        if partitions[own] != self.node.partition_id or digests[own] != party.own_p0:
            raise CryptoError("share: the roster does not hold this party's own contribution")
        collective = self.ckks.public_key(
            request.p0s, self.ckks.common_random_polynomial(party.crs)
        )
        party.partitions = partitions
        party.transcript = digest(
            transcript_statement(
                run, party.crs, request.parties, partitions, digests, request.channel_keys
            )
        )
        party.own_key = poly_bytes(collective.p0)
        return self._identity().sign(transcript_signed(run, party.transcript))

    def _deliver(self, msg: Message, request: DeliverRequest) -> RecordDict:
        party = self._party()
        if not set(request.senders) <= set(party.roster) or len(request.senders) < party.threshold:
            raise ConfigError("deliver: the senders are not at least t parties of the roster")
        if self.authenticated:
            self._check_consistency(msg, party, request)
        shares = []
        for sender, box in zip(request.senders, request.sealed, strict=True):
            peer = party.roster_keys[party.roster.index(sender)]
            opened = open_from(
                party.channel, peer, box, sealing_context(sender, party.party, party.crs)
            )
            shares.append(self.wire.read_polynomial(opened, f"share from party {sender}"))
        if self.authenticated and not np.array_equal(
            request.public_key, poly_from(party.own_key, self.shape)
        ):
            raise CryptoError(
                "deliver: the server's collective key is not the sum of the signed "
                "contributions (a key of its own)"
            )
        party.dealers = list(request.senders)
        party.held = [poly_bytes(held) for held in shares]
        party.public_key = poly_bytes(request.public_key)
        party.save(self.node.state)
        self._keep_shares(party, shares)
        key_digest = hashlib.sha256(self.wire.write_polynomial(request.public_key)).digest()
        return DeliverReply(party.party, key_digest).to_record(self.wire)

    def _check_consistency(self, msg: Message, party: PartyState, request: DeliverRequest) -> None:
        """Every dealer signed the transcript this party saw, and all of them dealt."""
        if sorted(request.senders) != sorted(party.roster):
            raise CryptoError(
                f"deliver: shares from {len(request.senders)} of the {len(party.roster)} "
                "parties that made the key: the collective key would not be theirs"
            )
        assert request.transcript_signatures is not None
        signed = transcript_signed(msg.metadata.run_id, party.transcript)
        identities = self._roster()
        for sender, signature in zip(request.senders, request.transcript_signatures, strict=True):
            partition = party.partitions[party.roster.index(sender)]
            if not identities.verify(partition, signature, signed):
                raise CryptoError(
                    f"deliver: party {sender} did not sign the transcript this party saw "
                    "(the server showed parties different keys)"
                )

    def _keep_shares(self, party: PartyState, shares: list[np.ndarray]) -> None:
        """Write the Shamir shares it holds to the node's key directory (0600), where it can.

        One file per party (:func:`write_held`): the setup's seed, the dealers and the
        shares. A read-only key directory (a deployment mounts the node's keys read-only)
        keeps them in the node's state only.
        """
        if not self.node.key_dir:
            return
        folder = Path(self.node.key_dir) / SHARES_DIR
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_held(folder / f"party-{party.party}.npz", party.crs, party.dealers, shares)
        except OSError:
            return

    def _decrypt(self, msg: Message, request: DecryptRequest) -> RecordDict:
        party = self._party()
        if not party.dealt:
            raise CryptoError("no shares of the parties' secrets on this node")
        if self.authenticated:
            uploaders = self._verified_uploaders(msg, party, request)
        else:
            uploaders = request.uploaders
        if not uploaders or len(set(uploaders)) != len(uploaders):
            raise CryptoError("decrypt: the uploaders are not distinct parties")
        missing = sorted(set(uploaders) - set(party.dealers))
        if missing:
            raise CryptoError(f"decrypt: this party holds no share of party {missing[0]}'s secret")
        held = [poly_from(party.held[party.dealers.index(u)], self.shape) for u in uploaders]
        coefficient = lagrange_for(party.party, request.parties, self.ckks.primes)
        weighted = scale_rows(sum_mod(held, self.ckks.primes), coefficient, self.ckks.primes)
        count = len(expected_layout(self.encoding.size(self.params.num_values()), self.preset))
        a = self.ckks.round_polynomials(party.crs, request.server_round, count)
        shares = list(self.ckks.decryption_shares(a, weighted))
        party.shares_given += count
        party.save(self.node.state)
        return DecryptReply(party.party, request.server_round, shares).to_record(self.wire)

    def _verified_uploaders(
        self, msg: Message, party: PartyState, request: DecryptRequest
    ) -> list[int]:
        """The parties whose signed uploads of the round the sum adds, once per round.

        Refused, before any share is made: a second request of a round (or an older one),
        a decrypting set of fewer than ``t`` distinct parties of the key setup or without
        this party, fewer than the roster's minimum of distinct uploaders, or an upload
        whose signature does not cover the round and digest it comes with.
        """
        ledger = Ledger.of(self.node.state)
        ledger.check_fresh(Step.DECRYPT, request.server_round)
        points = request.parties
        if (
            len(set(points)) != len(points)
            or len(points) < party.threshold
            or party.party not in points
            or not set(points) <= set(party.roster)
        ):
            raise CryptoError(
                f"decrypt: the decrypting set {points} is not {party.threshold} or more parties "
                "of the key setup including this one"
            )
        assert request.uploads is not None
        partitions = [u.partition for u in request.uploads]
        identities = self._roster()
        if len(set(partitions)) != len(partitions) or not set(partitions) <= set(party.partitions):
            raise CryptoError("decrypt: the uploads are not one signed upload per party")
        if len(partitions) < identities.min_uploads:
            raise CryptoError(
                f"decrypt: a sum of {len(partitions)} upload(s), fewer than the "
                f"{identities.min_uploads} the federation requires"
            )
        run, current = msg.metadata.run_id, request.server_round
        for upload in request.uploads:
            signed = upload_statement(run, current, upload.partition, upload.upload)
            if not identities.verify(upload.partition, upload.signature, signed):
                raise CryptoError(
                    f"decrypt: partition {upload.partition}'s upload of round {current} is not "
                    "signed as sent (forged, altered or of another round)"
                )
        ledger.answer(Step.DECRYPT, current)
        ledger.save(self.node.state)
        return [party.roster[party.partitions.index(p)] for p in partitions]


def write_held(path: Path, crs: bytes, dealers: list[int], shares: list[np.ndarray]) -> None:
    """Write a party's Shamir shares of each dealer's secret (NTT form) to ``path``, 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        np.savez(
            handle,
            crs=np.frombuffer(crs, dtype=np.uint8),
            dealers=np.asarray(dealers, dtype=np.int64),
            shares=np.stack(shares).astype(np.uint64),
        )


def read_held(path: Path) -> tuple[bytes, dict[int, np.ndarray]]:
    """The setup's seed and dealer -> share, from a file :func:`write_held` wrote."""
    with np.load(path) as stored:
        dealers = [int(d) for d in stored["dealers"]]
        return bytes(stored["crs"].tobytes()), dict(zip(dealers, stored["shares"], strict=True))
