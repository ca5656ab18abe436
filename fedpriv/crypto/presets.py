"""CKKS parameter presets, checked against the HE-standard 128-bit security bounds."""

from __future__ import annotations

import math
from dataclasses import dataclass

from fedpriv.crypto.sampling import NOISE_SIGMA
from fedpriv.errors import ConfigError

# Largest total coefficient-modulus bits for 128-bit classical security
# (HomomorphicEncryption.org standard, ternary secrets), by polynomial modulus degree.
MAX_COEFF_BITS_128 = {1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881}
ENCRYPTIONS = ("symmetric", "asymmetric")
BACKENDS = ("seal", "tenseal", "packed", "threshold")


@dataclass(frozen=True)
class CkksPreset:
    """A CKKS parameter set and how updates are encrypted under it.

    Attributes
    ----------
    name : str
        Preset name used on the command line and in ``ckks-preset``.
    poly_modulus_degree : int
        Ring dimension N; one ciphertext carries N/2 real values.
    coeff_mod_bit_sizes : tuple[int, ...]
        Bit sizes of the RNS primes. The last prime is SEAL's special (key-switching) prime;
        the first one bounds the magnitude a decrypted sum can have.
    scale_bits : int
        log2 of the encoding scale.
    encryption : str
        ``symmetric`` (clients hold the secret key anyway; half the encryption time) or
        ``asymmetric`` (as NVFlare does).
    backend : str
        ``packed``: SEAL's symmetric CKKS computed in numpy on the clients (seeded
        ciphertexts whose c1 is expanded by AES-256-CTR, complex packing, one prime of at
        most 40 bits), the server in numpy over the packed wire format, updates encoded as
        their drift from the seed's model (:mod:`fedpriv.crypto.encoding`);
        ``seal``: SEAL's own ciphertexts and format, parsed and added by SEAL on
        the server, weights encoded as they are; ``tenseal``: TenSEAL ``ckks_vector`` (N/2
        reals per ciphertext, full ciphertexts).
        ``threshold``: multiparty CKKS (``fedpriv.crypto.threshold``): no party holds the
        whole secret; each party encrypts under its own secret over the round's common
        ``a``, sums are decrypted by t parties' shares, and everything on the wire is
        switched to ``2^wire_bits``.
    description : str
        One line for help texts.
    smudging_bits : int
        Threshold presets: ``lambda``, the statistical security of decryption shares. Each
        share carries uniform noise of at least ``2^lambda`` times the bound on an
        aggregate's own noise (noise flooding, Asharov et al., Eurocrypt 2012), so that a
        share reveals nothing of the party's secret beyond statistical distance
        ``N * 2^-lambda``.
    max_parties : int
        Threshold presets: the most parties (and summed uploads) the noise bounds cover.
    wire_bits : int
        Threshold presets: bits per coefficient on the wire. Uploads and decryption shares
        are computed mod the primes' product q and sent as ``round(x 2^wire_bits / q)``
        (modulus switching); ``scale_bits`` is then the scale in that domain.

    """

    name: str
    poly_modulus_degree: int
    coeff_mod_bit_sizes: tuple[int, ...]
    scale_bits: int
    encryption: str = "symmetric"
    backend: str = "tenseal"
    description: str = ""
    smudging_bits: int = 0
    max_parties: int = 0
    wire_bits: int = 0

    def __post_init__(self) -> None:
        limit = MAX_COEFF_BITS_128.get(self.poly_modulus_degree)
        if limit is None:
            raise ConfigError(
                f"preset {self.name}: poly_modulus_degree {self.poly_modulus_degree} must be one "
                f"of {', '.join(map(str, MAX_COEFF_BITS_128))}"
            )
        if self.backend not in BACKENDS:
            raise ConfigError(f"preset {self.name}: backend must be one of {', '.join(BACKENDS)}")
        # TenSEAL always reserves the last prime for key switching; SEAL without keys needs none.
        fewest = 2 if self.backend == "tenseal" else 1
        if len(self.coeff_mod_bit_sizes) < fewest:
            raise ConfigError(
                f"preset {self.name}: backend {self.backend} needs at least {fewest} prime(s), "
                f"got {list(self.coeff_mod_bit_sizes)}"
            )
        if self.backend in ("seal", "packed") and self.encryption != "symmetric":
            raise ConfigError(
                f"preset {self.name}: the {self.backend} backend encrypts symmetrically only"
            )
        if self.backend == "threshold" and (
            self.encryption != "symmetric"
            or self.smudging_bits < 20
            or self.max_parties < 2
            or not 33 <= self.wire_bits <= 60
            or self.wire_bits + smudging_bits(self) > sum(self.coeff_mod_bit_sizes)
        ):
            raise ConfigError(
                f"preset {self.name}: a threshold preset encrypts symmetrically (each party "
                "under its own secret), with smudging_bits >= 20, max_parties >= 2 and "
                "33 <= wire_bits <= 60, the smudging noise below one unit of the wire: "
                "wire_bits + log2(smudging bound) <= the primes' bits"
            )
        if self.backend == "packed" and (
            len(self.coeff_mod_bit_sizes) != 1 or self.coeff_mod_bit_sizes[0] > 40
        ):
            raise ConfigError(
                f"preset {self.name}: the packed backend needs one prime of <= 40 bits"
            )
        total = sum(self.coeff_mod_bit_sizes)
        if total > limit:
            raise ConfigError(
                f"preset {self.name}: {total} coefficient-modulus bits exceed the 128-bit "
                f"security bound of {limit} for N={self.poly_modulus_degree}"
            )
        if any(not 20 <= bits <= 60 for bits in self.coeff_mod_bit_sizes):
            raise ConfigError(f"preset {self.name}: SEAL primes must have 20..60 bits")
        if self.backend == "threshold":
            if not 0 <= self.scale_bits <= self.wire_bits - 16:
                raise ConfigError(
                    f"preset {self.name}: scale_bits (in the wire's domain) must lie in "
                    f"[0, {self.wire_bits - 16}]"
                )
        elif not 20 <= self.scale_bits < self.coeff_mod_bit_sizes[0] - 1:
            raise ConfigError(
                f"preset {self.name}: scale_bits {self.scale_bits} must lie in "
                f"[20, {self.coeff_mod_bit_sizes[0] - 2}] for a first prime of "
                f"{self.coeff_mod_bit_sizes[0]} bits"
            )
        if self.encryption not in ENCRYPTIONS:
            raise ConfigError(
                f"preset {self.name}: encryption must be one of {', '.join(ENCRYPTIONS)}"
            )

    @property
    def slots(self) -> int:
        """Real values one ciphertext carries (complex packing doubles them under seal)."""
        if self.backend == "tenseal":
            return self.poly_modulus_degree // 2
        return self.poly_modulus_degree

    @property
    def drift(self) -> bool:
        """Whether updates travel as their drift from a reference model (else as weights)."""
        return self.backend in ("packed", "threshold")

    @property
    def check_slots(self) -> int:
        """Slots after the values that carry the (redundant) weight of an update."""
        return 3 if self.drift else 1

    @property
    def sum_bound(self) -> float:
        """Largest magnitude any slot of a (summed) ciphertext may reach.

        Decoding is exact while every coefficient of the encoded polynomial stays below half
        the first prime q; beyond that CKKS wraps around *silently*. A coefficient is a
        linear mix of the slots: with N/2 real slots (TenSEAL) it is at most the largest
        slot, so slots may reach q/(2 scale) (measured: N=4096 ``[60,49]`` wraps at 2^19);
        with complex packing (two reals a slot) at most sqrt(2) times the largest real, so
        the worst slot pattern wraps at q/(2 scale)/sqrt(2) (measured: 0.71 q/(2 scale)).
        The packed backend keeps 0.7 q/(2 scale), just inside that worst case (its noise is
        a few hundred units of a scale of 2^22); the seal backend one bit below q/(2 scale).
        """
        if self.backend == "threshold":
            # Coefficients live mod 2^wire_bits; the noise (a few units, times the tail of
            # max_parties terms) comes off the room first.
            room = 2.0 ** (self.wire_bits - 1) - _TAIL * self.max_parties
            return 0.7 * room / 2.0**self.scale_bits
        half = 2.0 ** (self.coeff_mod_bit_sizes[0] - 1 - self.scale_bits)  # ~ q / (2 scale)
        if self.backend == "packed":
            # q lies within 2^-15 of 2^bits for the primes SEAL picks; 0.7 covers it.
            return 0.7 * half
        return half / 2

    def client_bound(self, num_clients: int) -> float:
        """Largest magnitude one of ``num_clients`` summands may have."""
        return self.sum_bound / max(num_clients, 1)

    def wire_name(self) -> str:
        """The ``dtype`` tag ciphertext arrays of this preset carry."""
        return f"ckks:{self.name}"


# -- threshold noise: what a preset's parameters bound (no key, no SEAL) -----------------

# A high-probability bound (twelve standard deviations) on a coefficient's noise.
_TAIL = 12.0


def aggregate_noise_bound(preset: CkksPreset) -> float:
    """A bound on a coefficient of ``E_U``, the noise of a sum of fresh uploads (12 deviations).

    Each upload ``c0_i = -a s_i + e_i + m_i`` carries its own noise ``e_i`` (SEAL's clipped
    normal, deviation 3.2); a sum of up to ``max_parties`` of them has deviation
    ``3.2 sqrt(max_parties)``. This is what the smudging of decryption shares must hide.
    """
    return _TAIL * math.sqrt(preset.max_parties) * NOISE_SIGMA


def smudging_bits(preset: CkksPreset) -> int:
    """``log2 E``: smudging noise is uniform in ``[-E, E]``, ``E >= 2^lambda * bound``."""
    return math.ceil(preset.smudging_bits + math.log2(aggregate_noise_bound(preset)))


def threshold_error_std(preset: CkksPreset, uploads: int, decrypting: int) -> float:
    """Standard deviation of a decrypted slot's error under a threshold preset (value units).

    Per coefficient, in units of the wire: ``decrypting`` smudges uniform in ``[-E, E]``
    (variance ``E^2 / 3``, ``E`` in wire units ``2^smudging / (q / 2^b)``), one rounding
    (variance 1/12) per switched share, and two per upload (its switch and its encoding).
    A slot's real part mixes ``N/2`` coefficients: deviation ``sqrt(N/2)`` times theirs,
    over the scale. ``q`` is taken as ``2^(sum of prime bits)`` (SEAL's primes lie within
    2^-15 of it).
    """
    unit = 2.0 ** (smudging_bits(preset) + preset.wire_bits - sum(preset.coeff_mod_bit_sizes))
    variance = decrypting * unit**2 / 3 + (decrypting + 2 * uploads) / 12
    return math.sqrt(variance * preset.poly_modulus_degree / 2) / 2.0**preset.scale_bits


PRESETS: dict[str, CkksPreset] = {
    preset.name: preset
    for preset in (
        CkksPreset(
            "n4096-packed",
            4096,
            (36,),
            22,
            "symmetric",
            "packed",
            "default: N=4096, one 36-bit prime, scale 2^22, seeded symmetric, complex packing, "
            "drift encoding, packed wire, numpy clients and server",
        ),
        CkksPreset(
            "n4096-compact",
            4096,
            (52,),
            32,
            "symmetric",
            "seal",
            "SEAL's own format, N=4096 one 52-bit prime, scale 2^32, seeded symmetric, "
            "complex packing, weights encoded as they are, SEAL on the server",
        ),
        CkksPreset(
            "n4096-additive",
            4096,
            (60, 49),
            40,
            "symmetric",
            "tenseal",
            "TenSEAL ckks_vector, N=4096 [60,49] scale 2^40, symmetric (~8x float32 bytes)",
        ),
        CkksPreset(
            "nvflare-default",
            8192,
            (60, 40, 40),
            40,
            "asymmetric",
            "tenseal",
            "NVFlare's default: N=8192 [60,40,40] scale 2^40, public-key encryption",
        ),
        CkksPreset(
            "n4096-threshold",
            4096,
            (44, 44),
            5,
            "symmetric",
            "threshold",
            "ckks-threshold: N=4096, two 44-bit primes, each party's own secret over the "
            "round's common a, t-of-n decryption shares smudged by 2^40 times the sum's noise, "
            "uploads and shares switched to 36 bits, up to 1,024 parties",
            smudging_bits=40,
            max_parties=1024,
            wire_bits=36,
        ),
    )
}
DEFAULT_PRESET = "n4096-packed"
DEFAULT_THRESHOLD_PRESET = "n4096-threshold"


def get_preset(name: str) -> CkksPreset:
    """Return preset ``name`` or raise :class:`ConfigError` listing the valid names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown ckks-preset {name!r}; valid choices: {', '.join(PRESETS)}"
        ) from None
