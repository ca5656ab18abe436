"""Error types that fedpriv raises for problems a user or a peer can cause."""


class FedprivError(Exception):
    """Base class of every error fedpriv raises on purpose."""


class ConfigError(FedprivError, ValueError):
    """A run configuration, argument or experiment file is invalid."""


class CryptoError(FedprivError):
    """A CKKS operation was refused: bad keys, bad ciphertext or an unsafe value."""


class BoundError(CryptoError):
    """A plaintext value would exceed what the CKKS preset can carry without wrap-around."""


class CiphertextFormatError(CryptoError):
    """A serialized ciphertext is truncated, of another format or of another parameter set."""


class KeyMaterialError(CryptoError):
    """A key file holds keys it must not hold, or is readable by others."""


class AggregateRejectedError(CryptoError):
    """A client refused the aggregate it was sent (corrupt, or summed under another key)."""


# Codes of the Flower ``Error`` replies a client sends on purpose (Flower's own are < 1000).
AGGREGATE_REJECTED = 4601  # the broadcast aggregate failed the weight-slot check
NO_TRAINING_DATA = 4602  # the client's partition holds no training record
