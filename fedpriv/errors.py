"""Error types that fedpriv raises for problems a user or a peer can cause, and their codes."""

from __future__ import annotations

from enum import IntEnum


class FedprivError(Exception):
    """Base class of every error fedpriv raises on purpose.

    ``exit_code`` is what the ``fedpriv`` command returns when the error ends it; each
    subclass has its own, so scripts can tell a bad argument from a failed run.
    """

    exit_code: int = 1


class ConfigError(FedprivError, ValueError):
    """A run configuration, argument or experiment file is invalid (or would overwrite)."""

    exit_code = 2


class CryptoError(FedprivError):
    """A CKKS operation was refused: bad keys, bad ciphertext or an unsafe value."""

    exit_code = 3


class BoundError(CryptoError):
    """A plaintext value would exceed what the CKKS preset can carry without wrap-around."""


class CiphertextFormatError(CryptoError):
    """A serialized ciphertext is truncated, of another format or of another parameter set."""


class SealFormatError(CiphertextFormatError, ValueError):
    """Bytes that are not a well-formed SEAL object of the expected parameters."""


class AggregateRejectedError(CryptoError):
    """A client refused the aggregate it was sent (corrupt, or summed under another key)."""


class KeyMaterialError(CryptoError):
    """A key file holds keys it must not hold, or is readable by others."""

    exit_code = 4


class DeploymentError(FedprivError):
    """A deployment did not come up, or its run did not complete."""

    exit_code = 5


class RunFailedError(FedprivError):
    """A federation or an attack stopped without finishing its work."""

    exit_code = 6


class InterruptedRunError(FedprivError):
    """The user stopped a command (SIGINT or SIGTERM); what finished is kept."""

    exit_code = 130


class ReplyCode(IntEnum):
    """Codes of the Flower ``Error`` replies a client sends on purpose.

    Flower's own codes are below 1000; these never collide with them.
    """

    AGGREGATE_REJECTED = 4601
    """The broadcast aggregate failed the weight-slot check (corrupt or another key)."""
    NO_TRAINING_DATA = 4602
    """The client's partition holds no training record."""
    PROTOCOL_REFUSED = 4603
    """The client refused a protocol step (malformed, or not fitting its state)."""
    CANARY = 4604
    """A DP-audit canary was asked to evaluate: it holds no data."""
