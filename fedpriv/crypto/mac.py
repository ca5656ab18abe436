"""A linearly homomorphic MAC over ciphertext polynomials mod q: tags a keyless server can add.

The construction is the classic one for network coding and homomorphic authenticators
(Agrawal and Boneh, "Homomorphic MACs: MAC-based integrity for network coding", ACNS 2009;
Catalano and Fiore, "Practical homomorphic MACs for arithmetic circuits", EUROCRYPT 2013,
Section 3 for the linear case): the tag of a vector ``c`` uploaded under identity ``id`` is

    tag = <k, c> + F_K(id)   (mod q)

with ``k`` a secret uniform vector and ``F`` a pseudorandom function. Tags add as the
vectors do, so the server sums them with the ciphertexts it sums, mod the same prime; a
verifier who holds ``(k, K)`` checks an aggregate ``C`` claimed to sum the uploads of a set
``S`` of identities by recomputing ``<k, C> + sum_{id in S} F_K(id)``.

Why a keyless server cannot forge: each pad ``F_K(id)`` masks one tag and is used once
(identities carry a fresh 128-bit nonce of the uploader), so the tags it sees are uniform
and independent of ``k``. To pass a check for ``(C', S)`` with ``C'`` not the sum of the
uploads of ``S``, it must predict ``<k, C' - sum_S c_id>`` for a non-zero difference, i.e.
guess a uniform value mod q: probability ``1/q`` per tag. :func:`tags_for` takes as many
independent tags as make that at most ``2^-64`` (two for the 36-bit prime of the default
preset). An uploader must never tag two vectors under one identity (the difference of the
two tags would reveal ``<k, c - c'>``): clients answer once per round and draw the nonce
fresh.

``k`` is expanded from the key by ChaCha20 (RFC 8439, through ``cryptography``) and ``F``
is HMAC-SHA256 (RFC 2104, Python's ``hmac``); both are reduced mod q from 64-bit words,
whose bias (``q / 2^64``, below ``2^-27`` for primes of 36 bits) is negligible. This module
has no Flower import: it tags and checks polynomials; ``fedpriv.crypto.authenticated``
carries tags in Flower records.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from fedpriv.crypto.modq import mul_mod
from fedpriv.errors import CryptoError

SECRET_BYTES = 32
NONCE_BYTES = 16
# Forgery probability per check at most 2^-FORGERY_BITS.
FORGERY_BITS = 64
_IDENTITY = struct.Struct("<QIIB16s")
_VECTOR_LABEL = b"fedpriv mac vector key v1"
_PAD_LABEL = b"fedpriv mac pad key v1"


class Purpose(IntEnum):
    """What an upload is: a training update or evaluation metrics (never mixed in a sum)."""

    TRAIN = 1
    EVALUATE = 2


@dataclass(frozen=True)
class UploadIdentity:
    """Who uploaded what, when: the input of an upload's pad.

    Attributes
    ----------
    run : int
        The Flower run id (unsigned 64 bits).
    server_round : int
        The round the upload answers.
    sender : int
        The uploader's partition id.
    purpose : Purpose
        Training update or evaluation metrics.
    nonce : bytes
        16 fresh random bytes of the uploader: no two uploads share a pad.

    """

    run: int
    server_round: int
    sender: int
    purpose: Purpose
    nonce: bytes

    def __post_init__(self) -> None:
        if len(self.nonce) != NONCE_BYTES:
            raise CryptoError(f"an upload nonce has {NONCE_BYTES} bytes, not {len(self.nonce)}")
        if not (0 <= self.run < 1 << 64 and 0 <= self.server_round < 1 << 32):
            raise CryptoError(f"run {self.run} or round {self.server_round} out of range")
        if not 0 <= self.sender < 1 << 32:
            raise CryptoError(f"sender {self.sender} out of range")

    @classmethod
    def fresh(cls, run: int, server_round: int, sender: int, purpose: Purpose) -> UploadIdentity:
        """An identity with a new random nonce."""
        return cls(run, server_round, sender, purpose, os.urandom(NONCE_BYTES))

    def to_bytes(self) -> bytes:
        """The fixed-length encoding the pad is computed over."""
        return _IDENTITY.pack(
            self.run, self.server_round, self.sender, int(self.purpose), self.nonce
        )


def tags_for(q: int) -> int:
    """Independent tags per upload that bound a forgery by ``2^-FORGERY_BITS`` mod ``q``."""
    return math.ceil(FORGERY_BITS / math.log2(q))


Tag = tuple[int, ...]


def add_tags(tags: Iterable[Tag], q: int) -> Tag:
    """The sum of tags mod ``q`` (what the server does beside the ciphertext sum)."""
    tags = list(tags)
    if not tags:
        raise CryptoError("no tag to add")
    width = len(tags[0])
    if any(len(t) != width for t in tags):
        raise CryptoError("tags of different widths")
    return tuple(sum(column) % q for column in zip(*tags, strict=True))


class MacKey:
    """The MAC key of a key set: held by every key holder, never by the server.

    Parameters
    ----------
    secret : bytes
        32 secret bytes; the vector key and the pad key are derived from it (HMAC-SHA256
        with distinct labels), so that one file holds the whole key.

    """

    def __init__(self, secret: bytes) -> None:
        if len(secret) != SECRET_BYTES:
            raise CryptoError(f"a MAC key has {SECRET_BYTES} bytes, not {len(secret)}")
        self._vector_key = hmac.new(secret, _VECTOR_LABEL, hashlib.sha256).digest()
        self._pad_key = hmac.new(secret, _PAD_LABEL, hashlib.sha256).digest()
        self.fingerprint = hashlib.sha256(b"fedpriv mac fingerprint" + secret).hexdigest()[:16]

    @classmethod
    def generate(cls) -> tuple[MacKey, bytes]:
        """A new key and its secret bytes (to store, mode 0600)."""
        secret = os.urandom(SECRET_BYTES)
        return cls(secret), secret

    def __repr__(self) -> str:
        return f"MacKey(fingerprint={self.fingerprint})"

    # -- the two secret functions ----------------------------------------------------------
    def vectors(self, count: int, length: int, q: int) -> np.ndarray:
        """``k``: ``tags_for(q)`` uniform vectors mod q for ``count`` polynomials of ``length``.

        Shape ``(count, tags, length)``; polynomial ``j`` of an upload is always weighed by
        row ``j``, so the same position of every upload meets the same key.
        """
        tags = tags_for(q)
        words = count * tags * length
        # ChaCha20's 16-byte nonce: a 32-bit block counter (0) and 96 bits of nonce, the
        # modulus here, so that keys for different primes are independent.
        nonce = bytes(4) + q.to_bytes(12, "little")
        stream = Cipher(algorithms.ChaCha20(self._vector_key, nonce), mode=None).encryptor()
        raw = np.frombuffer(stream.update(bytes(8 * words)), dtype="<u8")
        return (raw % np.uint64(q)).reshape(count, tags, length)

    def pad(self, identity: UploadIdentity, q: int) -> Tag:
        """``F_K(id)``: one pseudorandom value mod q per tag."""
        tags = tags_for(q)
        values = []
        for index in range(tags):
            digest = hmac.new(
                self._pad_key, identity.to_bytes() + bytes([index]) + q.to_bytes(8, "little"),
                hashlib.sha256,
            ).digest()  # fmt: skip
            values.append(int.from_bytes(digest[:8], "little") % q)
        return tuple(values)

    # -- tagging and checking --------------------------------------------------------------
    def inner(self, polys: Sequence[np.ndarray], q: int) -> Tag:
        """``<k, c>`` mod q for the concatenation ``c`` of ``polys`` (reduced, uint64)."""
        if not polys:
            raise CryptoError("nothing to authenticate")
        length = int(np.asarray(polys[0]).size)
        if any(np.asarray(p).size != length for p in polys):
            raise CryptoError("polynomials of different lengths")
        keys = self.vectors(len(polys), length, q)
        total = [0] * keys.shape[1]
        for key, poly in zip(keys, polys, strict=True):
            values = np.asarray(poly, dtype=np.uint64).reshape(1, length)
            if values.size and int(values.max()) >= q:
                raise CryptoError("a polynomial is not reduced mod q")
            # Products are reduced (< q < 2^40); a row of 2^12-2^14 of them sums below 2^54.
            sums = mul_mod(key, values, q).sum(axis=1, dtype=np.uint64)
            for index, value in enumerate(sums):
                total[index] = (total[index] + int(value)) % q
        return tuple(total)

    def tag(self, polys: Sequence[np.ndarray], identity: UploadIdentity, q: int) -> Tag:
        """The tag of one upload's polynomials under ``identity``."""
        return add_tags([self.inner(polys, q), self.pad(identity, q)], q)

    def verify(
        self, polys: Sequence[np.ndarray], identities: Sequence[UploadIdentity], tag: Tag, q: int
    ) -> bool:
        """Whether ``tag`` authenticates ``polys`` as the sum of the uploads of ``identities``.

        Compared in constant time; distinct identities and their number are the caller's
        policy (:class:`fedpriv.crypto.authenticated.Expectation`).
        """
        if not identities:
            return False
        expected = add_tags([self.inner(polys, q), *(self.pad(i, q) for i in identities)], q)
        width = 8 * len(expected)
        if len(tag) != len(expected):
            return False
        return hmac.compare_digest(_tag_bytes(expected, width), _tag_bytes(tag, width))


def _tag_bytes(tag: Tag, width: int) -> bytes:
    return b"".join(int(v % (1 << 64)).to_bytes(8, "little") for v in tag)[:width]
