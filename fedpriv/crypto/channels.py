"""Pairwise authenticated encryption between clients, relayed by a server that cannot read it."""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fedpriv.errors import CryptoError

# As Flower's SecAgg+ does (Bell et al., CCS 2020): X25519 key agreement, HKDF-SHA256 to a
# 256-bit key, then an AEAD (ChaCha20-Poly1305 here) whose associated data binds the message
# to the run, the sender and the recipient. Each pairwise key encrypts one message, so a
# zero nonce is safe; a fresh key pair is made per run.
_INFO = b"fedpriv threshold-ckks share v1"
_NONCE = bytes(12)


def new_private_key() -> bytes:
    """A fresh X25519 private key (32 raw bytes)."""
    return X25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )


def public_key(private: bytes) -> bytes:
    """The raw public key of ``private``."""
    return (
        X25519PrivateKey.from_private_bytes(private)
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )


def _key(private: bytes, peer: bytes, context: bytes) -> ChaCha20Poly1305:
    try:
        secret = X25519PrivateKey.from_private_bytes(private).exchange(
            X25519PublicKey.from_public_bytes(peer)
        )
    except ValueError as err:
        raise CryptoError(f"not an X25519 key: {err}") from err
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO + context).derive(
        secret
    )
    return ChaCha20Poly1305(derived)


def seal_to(private: bytes, peer: bytes, plaintext: bytes, context: bytes) -> bytes:
    """Encrypt ``plaintext`` for the holder of ``peer``; ``context`` is authenticated."""
    return _key(private, peer, context).encrypt(_NONCE, plaintext, context)


def open_from(private: bytes, peer: bytes, ciphertext: bytes, context: bytes) -> bytes:
    """Decrypt what the holder of ``peer`` sealed to us under ``context``.

    Raises
    ------
    CryptoError
        If the ciphertext was altered, or sealed for someone else or another context.

    """
    try:
        return _key(private, peer, context).decrypt(_NONCE, ciphertext, context)
    except InvalidTag as err:
        raise CryptoError(
            "a pairwise share failed authentication (altered or misaddressed)"
        ) from err
