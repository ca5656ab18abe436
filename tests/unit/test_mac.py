"""The linearly homomorphic MAC: against an independent computation, additivity, forgeries."""

from __future__ import annotations

import hashlib
import hmac

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from fedpriv.crypto.authenticated import (
    Authenticator,
    AuthPolicy,
    Expectation,
    attach,
    split,
)
from fedpriv.crypto.mac import MacKey, Purpose, UploadIdentity, add_tags, tags_for
from fedpriv.errors import AggregateRejectedError, CiphertextFormatError

Q = 68719403009  # the default preset's 36-bit prime
N = 64


def _identity(sender: int, server_round: int = 3, run: int = 7) -> UploadIdentity:
    return UploadIdentity.fresh(run, server_round, sender, Purpose.TRAIN)


def _polys(rng: np.random.Generator, count: int = 4) -> list[np.ndarray]:
    return [rng.integers(0, Q, N, dtype=np.uint64) for _ in range(count)]


def _reference_tag(secret: bytes, polys: list[np.ndarray], identity: UploadIdentity) -> list[int]:
    """The tag from the construction's definition, in Python integers (no fedpriv arithmetic)."""
    vector_key = hmac.new(secret, b"fedpriv mac vector key v1", hashlib.sha256).digest()
    pad_key = hmac.new(secret, b"fedpriv mac pad key v1", hashlib.sha256).digest()
    tags = tags_for(Q)
    nonce = bytes(4) + Q.to_bytes(12, "little")
    stream = Cipher(algorithms.ChaCha20(vector_key, nonce), mode=None).encryptor()
    raw = stream.update(bytes(8 * len(polys) * tags * N))
    words = [int.from_bytes(raw[8 * i : 8 * i + 8], "little") % Q for i in range(len(raw) // 8)]
    out = []
    for t in range(tags):
        inner = 0
        for j, poly in enumerate(polys):
            key = words[(j * tags + t) * N : (j * tags + t + 1) * N]
            inner += sum(k * int(c) for k, c in zip(key, poly, strict=True))
        pad_input = identity.to_bytes() + bytes([t]) + Q.to_bytes(8, "little")
        pad = int.from_bytes(hmac.new(pad_key, pad_input, hashlib.sha256).digest()[:8], "little")
        out.append((inner + pad) % Q)
    return out


def test_tag_equals_the_definition_computed_in_python_integers() -> None:
    rng = np.random.default_rng(0)
    key, secret = MacKey.generate()
    polys = _polys(rng)
    identity = _identity(5)
    assert list(key.tag(polys, identity, Q)) == _reference_tag(secret, polys, identity)
    assert tags_for(Q) == 2  # 2^-72 per forgery attempt for the 36-bit prime


def test_tags_add_as_the_polynomials_do_and_verify_the_sum() -> None:
    rng = np.random.default_rng(1)
    key, _ = MacKey.generate()
    uploads = [_polys(rng) for _ in range(5)]
    identities = [_identity(s) for s in range(5)]
    tags = [key.tag(p, i, Q) for p, i in zip(uploads, identities, strict=True)]
    summed = [sum(parts) % np.uint64(Q) for parts in zip(*uploads, strict=True)]
    total = add_tags(tags, Q)
    assert key.verify(summed, identities, total, Q)


def test_what_a_keyless_server_can_compute_does_not_verify() -> None:
    """Each manipulation of the sum, the tag or the sender list is refused."""
    rng = np.random.default_rng(2)
    key, _ = MacKey.generate()
    uploads = [_polys(rng) for _ in range(4)]
    identities = [_identity(s) for s in range(4)]
    tags = [key.tag(p, i, Q) for p, i in zip(uploads, identities, strict=True)]
    summed = [sum(parts) % np.uint64(Q) for parts in zip(*uploads, strict=True)]
    total = add_tags(tags, Q)
    q = np.uint64(Q)
    forgeries = {
        # one upload passed off as the sum of all four
        "recombined": (uploads[0], identities, total),
        # the sum scaled by 2, with the tag scaled alike
        "scaled": ([(2 * p) % q for p in summed], identities, tuple(2 * t % Q for t in total)),
        # a plaintext added to c0 (server-side noise, or a chosen offset)
        "plaintext added": ([(summed[0] + q - 1) % q, *summed[1:]], identities, total),
        # the negation of one upload added twice: the sum without upload 3, claimed as all four
        "differenced": (
            [(s + q - u) % q for s, u in zip(summed, uploads[3], strict=True)],
            identities,
            total,
        ),
        # a true sum whose sender list names an upload it does not hold
        "sender added": (
            [sum(parts) % q for parts in zip(*uploads[:3], strict=True)],
            identities,
            add_tags(tags[:3], Q),
        ),
        # the same sum claimed for another round
        "other round": (summed, [_identity(s, server_round=4) for s in range(4)], total),
    }
    for name, (polys, claimed, tag) in forgeries.items():
        assert not key.verify(polys, claimed, tag, Q), name
    assert key.verify(summed, identities, total, Q)


def test_authenticator_bytes_round_trip_and_malformed_bytes_are_refused() -> None:
    identity = _identity(9)
    auth = Authenticator.of_upload(identity, (1, 2))
    assert Authenticator.from_bytes(auth.to_bytes()) == auth
    for bad in (b"", auth.to_bytes()[:-1], b"XXXX" + auth.to_bytes()[4:]):
        with pytest.raises(CiphertextFormatError, match="auth"):
            Authenticator.from_bytes(bad)
    from flwr.app import ArrayRecord

    record = attach(ArrayRecord(), auth)
    assert split(record)[1] == auth


def test_a_server_cannot_sum_a_sender_twice_or_mix_rounds() -> None:
    a = Authenticator.of_upload(_identity(1), (1, 1))
    with pytest.raises(CiphertextFormatError, match="twice"):
        Authenticator.sum([a, a], Q)
    with pytest.raises(CiphertextFormatError, match="different runs, rounds"):
        Authenticator.sum([a, Authenticator.of_upload(_identity(2, server_round=4), (1, 1))], Q)


def test_expectation_names_what_it_refuses() -> None:
    policy = AuthPolicy(min_train=3, min_evaluate=2)
    expect = Expectation(Purpose.TRAIN, 7, 1, 4, policy.minimum(Purpose.TRAIN))
    two = Authenticator.sum([Authenticator.of_upload(_identity(s), (0, 0)) for s in range(2)], Q)
    cases = {
        "carries no authenticator": None,
        "fewer than the 3": two,
        "not train": Authenticator.of_upload(
            UploadIdentity.fresh(7, 3, 1, Purpose.EVALUATE), (0, 0)
        ),
        "of run 8": Authenticator.of_upload(_identity(1, run=8), (0, 0)),
        "outside 1..4": Authenticator.of_upload(_identity(1, server_round=5), (0, 0)),
    }
    for reason, auth in cases.items():
        with pytest.raises(AggregateRejectedError, match=reason):
            expect.check(auth)
