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
