"""Compact CKKS through ``tenseal.sealapi``: seeded symmetric ciphertexts with complex packing.

One module: the only code that calls ``tenseal.sealapi`` for the packed format, so that
SEAL's file-path I/O and its quirks stay in one place.
"""

from __future__ import annotations

import struct

import numpy as np
import tenseal.sealapi as sealapi

from fedpriv.crypto.backend import OneAtATime
from fedpriv.crypto.presets import CkksPreset
from fedpriv.crypto.sealfiles import SealObject, memory_file
from fedpriv.crypto.sealformat import parse_ciphertext, parse_plaintext
from fedpriv.crypto.sealheader import decompress, parse_whole
from fedpriv.errors import (
    AggregateRejectedError,
    CiphertextFormatError,
    CryptoError,
    KeyMaterialError,
)

# A "trivial" ciphertext (c0 = m, c1 = 0) decrypts to m under every key: a malicious server
# could make clients decrypt, and train on, a model of its choosing. Clients refuse it.
TRIVIAL = (
    "trivial ciphertext (c1 = 0): it decrypts to the same chosen plaintext under every key, "
    "so it cannot be a sum of client uploads; refused"
)

# One ciphertext carries N real values: the real and imaginary parts of its N/2 complex slots.
# Clients encrypt symmetrically and serialize the *seeded* form (the uniform polynomial is
# replaced by the seed it was drawn from), half a ciphertext on the wire. One coefficient prime
# and no special prime: the server only adds, so it needs no key-switching prime and no key.
#
# ``sealapi`` saves and loads through file paths only; :mod:`fedpriv.crypto.sealfiles` turns
# that into bytes through an anonymous in-memory file, so no key or ciphertext ever lands on a
# filesystem.

# Context file: magic, version, kind (0 parameters only, 1 with the secret key), scale bits,
# reserved, length of SEAL's EncryptionParameters; then [u32 length, SEAL SecretKey].
_CONTEXT_HEAD = struct.Struct("<4sBBBBI")
_CONTEXT_MAGIC, _CONTEXT_VERSION = b"FPCX", 1
_KIND_PARAMETERS, _KIND_SECRET = 0, 1
_LENGTH = struct.Struct("<I")
# pybind11 turns SEAL's std::invalid_argument into ValueError, logic/runtime/ios errors into
# RuntimeError; the rest are defensive (bad sizes reaching the bindings).
_SEAL_ERRORS = (RuntimeError, ValueError, TypeError, MemoryError, OverflowError, IndexError)


def save_uncompressed(obj: SealObject, max_size: int = 1 << 31) -> bytes:
    """SEAL's uncompressed serialization of ``obj`` (``sealapi`` always compresses).

    Written to an anonymous in-memory file (nothing reaches a filesystem), then decompressed
    with :func:`fedpriv.crypto.sealformat.decompress`.
    """
    return decompress(memory_file().dump(obj), max_size, what=type(obj).__name__)


def seal_parameters(preset: CkksPreset) -> sealapi.EncryptionParameters:
    """SEAL's encryption parameters for ``preset`` (primes chosen by SEAL, deterministically)."""
    parms = sealapi.EncryptionParameters(sealapi.SCHEME_TYPE.CKKS)
    parms.set_poly_modulus_degree(preset.poly_modulus_degree)
    parms.set_coeff_modulus(
        sealapi.CoeffModulus.Create(preset.poly_modulus_degree, list(preset.coeff_mod_bit_sizes))
    )
    return parms


class SealContext(OneAtATime):
    """A seal-backend CKKS context: the parameters, and the secret key on the clients' side.

    The server's instance holds a ``SEALContext`` and an ``Evaluator`` and nothing else.
    """

    def __init__(self, preset: CkksPreset, secret_key: sealapi.SecretKey | None = None) -> None:
        self.preset = preset
        self._parms = seal_parameters(preset)
        self._context = sealapi.SEALContext(self._parms, True, sealapi.SEC_LEVEL_TYPE.TC128)
        if not self._context.parameters_set():
            raise KeyMaterialError(
                f"preset {preset.name}: SEAL refuses the parameters "
                f"({self._context.parameter_error_message()})"
            )
        self._scale = 2.0**preset.scale_bits
        self._evaluator = sealapi.Evaluator(self._context)
        self._encoder = sealapi.CKKSEncoder(self._context)
        self._secret_key = secret_key
        if secret_key is not None:
            self._encryptor = sealapi.Encryptor(self._context, secret_key)
            self._decryptor = sealapi.Decryptor(self._context, secret_key)
        # A full ciphertext is two polynomials of N 64-bit words per prime; seeded ones less.
        words = 2 * preset.poly_modulus_degree * len(preset.coeff_mod_bit_sizes)
        self.max_ciphertext_bytes = 8 * words + 4096
        self.primes = [m.value() for m in self._parms.coeff_modulus()]

    # -- keys and files ---------------------------------------------------------------------
    @classmethod
    def generate(cls, preset: CkksPreset) -> SealContext:
        """A new context with a fresh secret key."""
        parms = seal_parameters(preset)
        context = sealapi.SEALContext(parms, True, sealapi.SEC_LEVEL_TYPE.TC128)
        return cls(preset, sealapi.KeyGenerator(context).secret_key())

    def is_private(self) -> bool:
        """Whether this context holds the secret key."""
        return self._secret_key is not None

    def held_keys(self) -> list[str]:
        """Names of the keys this context holds (only ever the secret key)."""
        return ["a secret key"] if self.is_private() else []

    def to_bytes(self, secret: bool) -> bytes:
        """The context file: parameters, and the secret key when ``secret``."""
        parms = memory_file().dump(self._parms)
        kind = _KIND_SECRET if secret else _KIND_PARAMETERS
        parts = [
            _CONTEXT_HEAD.pack(
                _CONTEXT_MAGIC, _CONTEXT_VERSION, kind, self.preset.scale_bits, 0, len(parms)
            ),
            parms,
        ]
        if secret:
            if self._secret_key is None:
                raise CryptoError("this context holds no secret key to serialize")
            key = memory_file().dump(self._secret_key)
            parts += [_LENGTH.pack(len(key)), key]
        return b"".join(parts)

    @classmethod
    def from_bytes(
        cls, data: bytes, preset: CkksPreset, origin: str, allow_secret: bool = True
    ) -> SealContext:
        """Parse a context file of ``preset``; its parameters must be exactly the preset's.

        With ``allow_secret=False`` (the server) a file that carries a secret key is refused
        from its header, before the key is ever parsed.

        Raises
        ------
        KeyMaterialError
            Naming what is wrong with the file.

        """
        head = _CONTEXT_HEAD.size
        if len(data) < head:
            raise KeyMaterialError(f"{origin}: {len(data)} bytes is not a fedpriv SEAL context")
        magic, version, kind, scale_bits, _reserved, length = _CONTEXT_HEAD.unpack_from(data)
        if magic != _CONTEXT_MAGIC or version != _CONTEXT_VERSION:
            raise KeyMaterialError(f"{origin}: not a fedpriv SEAL context (magic/version)")
        if kind not in (_KIND_PARAMETERS, _KIND_SECRET) or scale_bits != preset.scale_bits:
            raise KeyMaterialError(f"{origin}: not a context of preset {preset.name}")
        if kind == _KIND_SECRET and not allow_secret:
            raise KeyMaterialError(
                f"{origin}: the server context holds a secret key; the server must hold "
                "parameters only (provision with `fedpriv keys new`)"
            )
        parms_bytes = data[head : head + length]
        expected = memory_file().dump(seal_parameters(preset))
        if parms_bytes != expected:
            raise KeyMaterialError(f"{origin}: CKKS parameters differ from preset {preset.name}")
        rest = data[head + length :]
        if kind == _KIND_PARAMETERS:
            if rest:
                raise KeyMaterialError(f"{origin}: trailing data after the parameters")
            return cls(preset)
        return cls(preset, cls._parse_secret_key(rest, preset, origin))

    @staticmethod
    def _parse_secret_key(rest: bytes, preset: CkksPreset, origin: str) -> sealapi.SecretKey:
        if len(rest) < _LENGTH.size or _LENGTH.unpack_from(rest)[0] != len(rest) - _LENGTH.size:
            raise KeyMaterialError(f"{origin}: secret key missing or truncated")
        key_bytes = rest[_LENGTH.size :]
        parms = seal_parameters(preset)
        context = sealapi.SEALContext(parms, True, sealapi.SEC_LEVEL_TYPE.TC128)
        key = sealapi.SecretKey()
        try:
            parse_whole(key_bytes, len(key_bytes), what=f"{origin}: secret key")
            memory_file().load(key, key_bytes, context)
        except (CiphertextFormatError, *_SEAL_ERRORS) as err:
            raise KeyMaterialError(f"{origin}: not a secret key of preset {preset.name}") from err
        return key

    # -- encryption (clients) ---------------------------------------------------------------
    def encrypt(self, values: np.ndarray) -> bytes:
        """Encrypt up to N reals into one seeded ciphertext (the caller checks the bound)."""
        if self._secret_key is None:
            raise CryptoError("this context holds no secret key and cannot encrypt")
        reals = np.zeros(self.preset.slots, dtype=np.float64)
        reals[: values.size] = values
        plain = sealapi.Plaintext()
        # Two reals per slot; a list of complex is the bindings' fastest conversion.
        self._encoder.encode(reals.view(np.complex128).tolist(), self._scale, plain)
        return memory_file().dump(self._encryptor.encrypt_symmetric(plain))

    def secret_ntt(self) -> np.ndarray:
        """The secret key's polynomials in NTT form (``(L, N)`` u64), for numpy encryption."""
        if self._secret_key is None:
            raise CryptoError("this context holds no secret key")
        data = save_uncompressed(self._secret_key)
        key: np.ndarray = parse_plaintext(
            data, self.primes, self.preset.poly_modulus_degree, what="secret key"
        )
        return key

    @property
    def prime(self) -> int:
        """The coefficient modulus of a one-prime preset."""
        if len(self.primes) != 1:
            raise CryptoError(f"preset {self.preset.name} has {len(self.primes)} primes, not one")
        return int(self.primes[0])

    def encode_ntt(self, values: np.ndarray) -> np.ndarray:
        """Up to N reals encoded at the preset's scale: the plaintext's NTT coefficients (u64).

        Encoding needs the parameters only; SEAL's encoder is the reference the packed
        backend's numpy encoding is tested against.
        """
        reals = np.zeros(self.preset.slots, dtype=np.float64)
        reals[: values.size] = values
        plain = sealapi.Plaintext()
        self._encoder.encode(reals.view(np.complex128).tolist(), self._scale, plain)
        data = decompress(memory_file().dump(plain), self.max_ciphertext_bytes, what="plaintext")
        coefficients: np.ndarray = parse_plaintext(
            data, self.primes, self.preset.poly_modulus_degree
        )[0]
        return coefficients

    def parse_uncompressed(self, blob: bytes) -> sealapi.Ciphertext:
        """Load a full or seeded ciphertext fedpriv wrote (uncompressed) into SEAL."""
        return self.parse(blob, "ciphertext", self.preset.slots)

    def decrypt(self, ciphertext: sealapi.Ciphertext, size: int) -> np.ndarray:
        """Decrypt one ciphertext into its first ``size`` reals; refuse a trivial one.

        Raises
        ------
        AggregateRejectedError
            If ``c1`` is zero (see :data:`TRIVIAL`).

        """
        parsed = parse_ciphertext(
            save_uncompressed(ciphertext), self.primes, self.preset.poly_modulus_degree
        )
        if parsed.c1 is not None and not parsed.c1.any():
            raise AggregateRejectedError(TRIVIAL)
        return self.decrypt_unchecked(ciphertext, size)

    def decrypt_unchecked(self, ciphertext: sealapi.Ciphertext, size: int) -> np.ndarray:
        """Decrypt one ciphertext fedpriv itself assembled (no check for triviality)."""
        if self._secret_key is None:
            raise CryptoError("this context holds no secret key and cannot decrypt")
        plain = sealapi.Plaintext()
        self._decryptor.decrypt(ciphertext, plain)
        slots = self.preset.poly_modulus_degree // 2
        values = np.fromiter(self._encoder.decode_complex(plain), np.complex128, count=slots)
        return values.view(np.float64)[:size].copy()

    # -- the server's part: parse, add, serialize --------------------------------------------
    def parse(self, blob: bytes, what: str, size: int) -> sealapi.Ciphertext:
        """Load a (seeded or full) ciphertext of these parameters; refuse anything else.

        Every ciphertext carries N reals; ``size`` (how many of them are used) is checked by
        the caller against the record's layout.

        Raises
        ------
        CiphertextFormatError
            If the bytes are not a fresh two-polynomial ciphertext at this preset's scale.

        """
        parse_whole(blob, self.max_ciphertext_bytes, what=what)
        ciphertext = sealapi.Ciphertext()
        try:
            memory_file().load(ciphertext, blob, self._context)
        except _SEAL_ERRORS as err:
            raise CiphertextFormatError(
                f"{what}: not a ciphertext of preset {self.preset.name} ({err})"
            ) from err
        if (
            ciphertext.parms_id() != self._context.first_parms_id()
            or ciphertext.size() != 2
            or not ciphertext.is_ntt_form()
            or ciphertext.is_transparent()
        ):
            raise CiphertextFormatError(f"{what}: not a fresh two-polynomial ciphertext")
        if ciphertext.scale != self._scale:
            raise CiphertextFormatError(
                f"{what}: scale {ciphertext.scale:.6g}, preset {self.preset.name} uses "
                f"2^{self.preset.scale_bits}"
            )
        return ciphertext

    def add_(self, total: sealapi.Ciphertext, other: sealapi.Ciphertext) -> None:
        """``total += other``."""
        self._evaluator.add_inplace(total, other)

    def add_plain_(self, total: sealapi.Ciphertext, values: np.ndarray) -> None:
        """``total += values`` for plaintext reals (no key needed: DP noise on the server)."""
        reals = np.zeros(self.preset.slots, dtype=np.float64)
        reals[: values.size] = values
        plain = sealapi.Plaintext()
        self._encoder.encode(
            reals.view(np.complex128).tolist(), total.parms_id(), total.scale, plain
        )
        self._evaluator.add_plain_inplace(total, plain)

    def serialize(self, ciphertext: sealapi.Ciphertext) -> bytes:
        """The bytes of a (summed, hence full) ciphertext."""
        return memory_file().dump(ciphertext)
