"""What a malicious server did, as it records it in the run directory, and what it reads back."""

from __future__ import annotations

import io
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from fedpriv.adversaries.crafting import METER, METER_UNIT, linear_layers
from fedpriv.adversary import Adversary
from fedpriv.parameters import State
from fedpriv.rundir import RunDirectory, read_json, write_json

PLAN_FILE = "adversary.json"
MODELS_FILE = "adversary-models.npz"
PARTS = ("honest", "target", "others")


class Outcome(StrEnum):
    """How the round the server acted in relates what it sent to what it can read.

    ``models``: the server averages the models clients return. ``drifts``: it adds each
    client's change to the model it sent (threshold CKKS). ``decrypted``: the parties
    decrypted the target's own upload for it. ``recombined``: single-key CKKS; it broadcast
    the target's upload as the aggregate and read nothing itself. ``refused``: the parties
    refused to decrypt the target's upload.
    """

    MODELS = "models"
    DRIFTS = "drifts"
    DECRYPTED = "decrypted"
    RECOMBINED = "recombined"
    REFUSED = "refused"

    @property
    def holds_models(self) -> bool:
        """Whether the server held the round's models in plaintext (and wrote them)."""
        return self not in (Outcome.RECOMBINED, Outcome.REFUSED)


@dataclass(frozen=True)
class AttackRecord:
    """What the malicious server did, as it records it in the run directory.

    Attributes
    ----------
    plan : Adversary
        The attack, target partition and first round.
    server_round : int
        The round it acted in.
    target_node : int
        The node id of the target.
    others : list[int]
        The other nodes of the round (sent the dead model, where models were crafted).
    aggregate : Outcome
        What the server's aggregate of that round is.

    """

    plan: Adversary
    server_round: int
    target_node: int
    others: list[int]
    aggregate: Outcome

    @property
    def decrypted(self) -> bool:
        """Whether the parties decrypted the target's upload (no aggregate is involved)."""
        return self.aggregate == Outcome.DECRYPTED

    def to_json(self) -> dict[str, object]:
        """The JSON form."""
        return {
            "adversary": str(self.plan),
            "round": self.server_round,
            "target_node": self.target_node,
            "others": self.others,
            "aggregate": str(self.aggregate),
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> AttackRecord:
        """Read the JSON form."""
        others = data["others"]
        assert isinstance(others, list)
        return cls(
            Adversary.parse(str(data["adversary"])),
            int(str(data["round"])),
            int(str(data["target_node"])),
            [int(n) for n in others],
            Outcome(str(data["aggregate"])),
        )


@dataclass(frozen=True)
class SentModels:
    """The models the malicious server held and sent in the attack round.

    ``decrypted`` is the target's trained model as the parties decrypted it (``decrypt-one``),
    else ``None``.
    """

    honest: State
    target: State
    others: State
    decrypted: State | None = None


def write_attack(rundir: RunDirectory, record: AttackRecord, sent: SentModels | None) -> None:
    """Store the record (and the models, where the server held them) for the attacks."""
    if sent is not None:
        buffer = io.BytesIO()
        parts = {f"{part}/{k}": v for part in PARTS for k, v in getattr(sent, part).items()}
        if sent.decrypted is not None:
            parts.update({f"{Outcome.DECRYPTED}/{k}": v for k, v in sent.decrypted.items()})
        np.savez(buffer, names=np.array(list(sent.target)), **parts)
        (rundir.path / MODELS_FILE).write_bytes(buffer.getvalue())
    write_json(rundir.path / PLAN_FILE, record.to_json())


def read_attack(rundir: RunDirectory) -> tuple[AttackRecord, SentModels | None] | None:
    """The record and the models of the attack round, if the run's server attacked.

    The models are ``None`` where the server held none in plaintext (``recombined``,
    ``refused``).
    """
    path = rundir.path / PLAN_FILE
    if not path.is_file():
        return None
    record = AttackRecord.from_json(read_json(path))
    if not record.aggregate.holds_models:
        return record, None
    with np.load(rundir.path / MODELS_FILE) as data:
        names = [str(n) for n in data["names"]]
        honest, target, others = ({n: data[f"{part}/{n}"] for n in names} for part in PARTS)
        decrypted = (
            {n: data[f"{Outcome.DECRYPTED}/{n}"] for n in names} if record.decrypted else None
        )
    return record, SentModels(honest, target, others, decrypted)


@dataclass(frozen=True)
class Isolated:
    """The target's update as the malicious server reads it back from an aggregate.

    Attributes
    ----------
    before, after : State
        The model the target was sent, and the model it trained (recovered).
    share : float
        The target's share of the aggregate's weight.
    share_measured : bool
        Whether ``share`` was read off the meter (else assumed: equal weights).
    ignored : tuple[str, ...]
        Names whose recovered values mix in other clients (the output bias).

    """

    before: State
    after: State
    share: float
    share_measured: bool
    ignored: tuple[str, ...]


def isolate(record: AttackRecord, sent: SentModels, aggregate: State | None) -> Isolated:
    """The target's trained model from the round's aggregate (the new global model).

    ``decrypted``: the parties decrypted it, exactly; no aggregate is needed.

    ``models`` aggregation: ``A = rho after_t + (1 - rho) others`` on every coordinate the
    other clients' training leaves alone, with ``rho`` read off the meter. ``drifts``
    (threshold CKKS): ``A = honest + rho (after_t - target)``; the meter reads nothing
    there, and ``rho`` is taken as an equal share of the sampled clients.
    """
    if record.decrypted:
        assert sent.decrypted is not None
        return Isolated(sent.target, sent.decrypted, 1.0, True, ())
    assert aggregate is not None
    (w1, _), *_, (_, output_bias) = linear_layers(sent.target)
    if record.aggregate == Outcome.MODELS:
        # The meter's neighbour is the same in every model and moved by nobody: whatever the
        # aggregate shows there is the aggregation's own constant error (Flower's SecAgg+
        # dequantization leaves one), taken off every coordinate.
        offset = float(aggregate[w1][METER_UNIT, 1]) - float(sent.target[w1][METER_UNIT, 1])
        moved = float(aggregate[w1][METER_UNIT, 0]) - float(sent.target[w1][METER_UNIT, 0])
        share = 1.0 - (moved - offset) / METER
        measured = True
        after = {
            k: ((aggregate[k].astype(np.float64) - offset - (1 - share) * sent.others[k]) / share)
            for k in sent.target
        }
    else:
        share = 1.0 / (1 + len(record.others))
        measured = False
        after = {
            k: sent.target[k] + (aggregate[k].astype(np.float64) - sent.honest[k]) / share
            for k in sent.target
        }
    typed = {k: v.astype(sent.target[k].dtype) for k, v in after.items()}
    return Isolated(sent.target, typed, share, measured, (output_bias,))
