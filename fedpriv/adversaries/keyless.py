"""A server without a key: every broadcast it can compute from the uploads it has seen.

The capabilities, not a list of attacks (DESIGN.md, "Active security"): the server holds
the CKKS parameters and every upload with its authenticator. Without a key it can compute
any linear combination ``sum a_i c_i`` mod q of ciphertexts it has seen (recombining,
scaling, negating, differencing, replaying: each is a choice of the ``a_i``), add a
plaintext of its choice to ``c0``, and attach any authenticator it can write: any run,
round, purpose and sender list, with the same combination of the tags it saw (the only
tag arithmetic available without the MAC key). :meth:`KeylessServer.forge` is that whole
class of broadcasts; tests play members of it against clients and the key holder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from flwr.app import ArrayRecord

from fedpriv.crypto.authenticated import Authenticator, attach, polynomials, split
from fedpriv.crypto.encoding import UpdateEncoding
from fedpriv.crypto.mac import Purpose
from fedpriv.crypto.packed import PackedCiphertext, PackedContext, Polynomial
from fedpriv.crypto.packing import ciphertext_record, deserialize_update, expected_layout
from fedpriv.errors import CryptoError


@dataclass(frozen=True)
class Seen:
    """One upload as the server holds it: its ciphertexts (parsed) and its authenticator."""

    ciphertexts: list[PackedCiphertext]
    auth: Authenticator | None


@dataclass(frozen=True)
class Claim:
    """What a forged authenticator says: any of it may be false.

    Attributes
    ----------
    senders : Sequence[int] | None
        Indices (into the uploads seen) whose sender entries it lists; ``None``: those
        with a non-zero coefficient.
    purpose, server_round, run : optional
        Overrides of the first listed upload's.

    """

    senders: Sequence[int] | None = None
    purpose: Purpose | None = None
    server_round: int | None = None
    run: int | None = None


class KeylessServer:
    """The server's computing power over ciphertexts: parameters only, no key.

    Parameters
    ----------
    context : PackedContext
        A parameters-only context (a context that holds a key is refused).
    encoding : UpdateEncoding
        How clients lay out their payload (the server knows it: it is in the run config).
    num_values : int
        Values per upload (the model's size, which the server knows).

    """

    def __init__(self, context: PackedContext, encoding: UpdateEncoding, num_values: int) -> None:
        if context.is_private():
            raise CryptoError("a keyless server holds no secret key")
        self.context = context
        self.encoding = encoding
        self.size = encoding.size(num_values)
        self.layout = expected_layout(self.size, context.preset)
        self.seen: list[Seen] = []

    def observe(self, record: ArrayRecord) -> int:
        """Keep one upload (or any ciphertext record it was sent); return its index."""
        ciphertexts, auth = split(record)
        parsed = deserialize_update(ciphertexts, self.context, self.context.preset, self.size)
        self.seen.append(Seen(parsed, auth))
        return len(self.seen) - 1

    def forge(
        self,
        coefficients: Sequence[int],
        claim: Claim | None = None,
        plain: np.ndarray | None = None,
    ) -> ArrayRecord:
        """``sum a_i c_i (+ plain)`` with an authenticator whose tag is ``sum a_i t_i``.

        ``coefficients`` (integers, negative allowed) weigh the uploads seen, in order.
        ``plain``: payload slots (as the encoding lays them out) added to ``c0``.
        """
        q = self.context.q
        if len(coefficients) != len(self.seen):
            raise CryptoError(f"{len(self.seen)} uploads seen, {len(coefficients)} coefficients")
        chunks = []
        for index, size in enumerate(self.layout):
            c0 = np.zeros(self.context.n, dtype=object)
            c1 = np.zeros(self.context.n, dtype=object)
            for a, seen in zip(coefficients, self.seen, strict=True):
                if a == 0:
                    continue
                copy = replace(seen.ciphertexts[index], seeds=list(seen.ciphertexts[index].seeds))
                p0, p1 = polynomials(self.context, [copy])
                c0 = (c0 + (a % q) * p0.astype(object)) % q
                c1 = (c1 + (a % q) * p1.astype(object)) % q
            ciphertext = PackedCiphertext(
                Polynomial.pack_from(c0.astype(np.uint64)),
                [],
                Polynomial.pack_from(c1.astype(np.uint64)),
            )
            if plain is not None:
                start = sum(self.layout[:index])
                self.context.add_plain_(ciphertext, np.asarray(plain[start : start + size]))
            chunks.append((ciphertext, size))
        record = ciphertext_record(
            self.context.preset,
            [self.context.serialize(ciphertext) for ciphertext, _ in chunks],
            [size for _, size in chunks],
        )
        auth = self._authenticator(coefficients, claim or Claim())
        return record if auth is None else attach(record, auth)

    def _authenticator(self, coefficients: Sequence[int], claim: Claim) -> Authenticator | None:
        q = self.context.q
        listed = (
            list(claim.senders)
            if claim.senders is not None
            else [i for i, a in enumerate(coefficients) if a]
        )
        maybe = [s.auth for s in self.seen]
        auths = [a for a in maybe if a is not None]
        if not listed or len(auths) != len(maybe):
            return None  # the uploads carry no tags: an unauthenticated run
        first = auths[listed[0]]
        width = len(first.tag)
        tag = tuple(
            sum((a % q) * auth.tag[k] for a, auth in zip(coefficients, auths, strict=True)) % q
            for k in range(width)
        )
        senders = tuple(s for i in listed for s in auths[i].senders)
        return Authenticator(
            claim.purpose or first.purpose,
            first.run if claim.run is None else claim.run,
            first.server_round if claim.server_round is None else claim.server_round,
            senders,
            tag,
        )
