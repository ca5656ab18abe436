"""The adversary a run plays against its clients: the ``adversary`` run-config key."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from fedpriv.errors import ConfigError

MALICIOUS_SERVER = "malicious-server"


class ServerAttack(StrEnum):
    """What a malicious server crafts into the models it sends.

    ``isolation`` (Pasquini et al., "Eluding Secure Aggregation in Federated Learning via
    Model Inconsistency", CCS 2022): the target gets the real model, every other client a
    model whose update the server can cancel, so that the aggregate is the target's update.
    ``imprint`` (Fowl et al., "Robbing the Fed", ICLR 2022): the same isolation, and the
    target's first linear layer replaced by a binning imprint from which many of its records
    are read back exactly.
    ``decrypt-one`` (threshold decryption used as an oracle): the server sends every client
    the honest model, then asks the decrypting parties for shares of the target's own
    ciphertext instead of (besides) the round's sum. Parties cannot tell a sum from one
    upload, so ``t`` honest parties decrypt the target's update for it.
    ``broadcast-one`` (single-key CKKS): the server cannot craft a model it cannot encrypt
    (a trivial ciphertext is refused), but it can recombine what it holds: it broadcasts the
    target's own upload as the round's aggregate (a linear combination of the uploads with
    one coefficient 1).

    Each is played by a class in :mod:`fedpriv.adversaries` (``fedpriv.registry.ADVERSARIES``
    says which, and what it needs of the scheme and the model).
    """

    ISOLATION = "isolation"
    IMPRINT = "imprint"
    DECRYPT_ONE = "decrypt-one"
    BROADCAST_ONE = "broadcast-one"


@dataclass(frozen=True)
class Adversary:
    """A malicious server's plan: which attack, against which client, from which round.

    Attributes
    ----------
    attack : ServerAttack | None
        ``None``: the server is honest (it may still be curious).
    target : int
        The partition id of the client attacked.
    round : int
        The first round the server may act in. It acts in the first round from then on in
        which it has seen the target's node (clients name their partition in their replies)
        and sampled it; earlier rounds are honest.

    """

    attack: ServerAttack | None = None
    target: int = 0
    round: int = 2

    def __post_init__(self) -> None:
        if self.target < 0:
            raise ConfigError(f"adversary target must be a partition id >= 0, got {self.target}")
        if self.round < 1:
            raise ConfigError(f"adversary round must be >= 1, got {self.round}")

    @property
    def honest(self) -> bool:
        """Whether the server follows the protocol."""
        return self.attack is None

    @classmethod
    def parse(cls, text: str) -> Adversary:
        """``malicious-server:<attack>[,target=<partition>][,round=<r>]`` ("" for honest).

        Raises
        ------
        ConfigError
            Naming the part that is not understood, with the valid choices.

        """
        text = text.strip()
        if not text:
            return cls()
        threat, _, rest = text.partition(":")
        usage = (
            f"adversary must be {MALICIOUS_SERVER}:<{'|'.join(ServerAttack)}>"
            "[,target=<partition>][,round=<r>]"
        )
        if threat != MALICIOUS_SERVER or not rest:
            raise ConfigError(f"{usage}; got {text!r}")
        name, *options = rest.split(",")
        if name not in {a.value for a in ServerAttack}:
            raise ConfigError(f"unknown malicious-server attack {name!r}; valid: {usage}")
        values = {"target": 0, "round": 2}
        for option in options:
            key, _, value = option.partition("=")
            if key not in values or not value.strip().lstrip("-").isdigit():
                raise ConfigError(f"adversary option {option!r} not understood; {usage}")
            values[key] = int(value)
        return cls(ServerAttack(name), values["target"], values["round"])

    def __str__(self) -> str:
        if self.attack is None:
            return ""
        return f"{MALICIOUS_SERVER}:{self.attack},target={self.target},round={self.round}"
