"""CKKS parameter presets, checked against the HE-standard 128-bit security bounds."""

from __future__ import annotations

import math
from dataclasses import dataclass

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
        secret key; clients encrypt under a collective public key and decrypt sums together.
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
            self.encryption != "asymmetric" or self.smudging_bits < 20 or self.max_parties < 2
        ):
            raise ConfigError(
                f"preset {self.name}: a threshold preset encrypts under the collective public "
                "key (asymmetric), with smudging_bits >= 20 and max_parties >= 2"
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
        top = sum(self.coeff_mod_bit_sizes) if self.backend == "threshold" else None
        if top is not None and not 20 <= self.scale_bits < top - 2:
            raise ConfigError(f"preset {self.name}: scale_bits must lie in [20, {top - 3}]")
        if top is None and not 20 <= self.scale_bits < self.coeff_mod_bit_sizes[0] - 1:
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
            # q is the product of every prime; the smudging of the decryption shares comes
            # off the room first.
            q_bits = sum(self.coeff_mod_bit_sizes)
            room = 2.0 ** (q_bits - 1) - self.max_parties * 2.0 ** smudging_bits(self)
            return 0.7 * room * (1 - 2.0**-10) / 2.0**self.scale_bits
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


def fresh_noise_std(n: int, parties: int) -> float:
    """Standard deviation of a coefficient of a fresh ciphertext's noise.

    Under a key of ``parties`` parties: ``u*e + e0 + e1*s`` with ternary ``u`` and ``s_i``,
    noise of deviation 3.2.
    """
    sigma = 3.2
    return math.sqrt(2 * n * parties * (2 / 3) * sigma**2 + sigma**2)


def aggregate_noise_bound(preset: CkksPreset) -> float:
    """A bound on a coefficient's noise in a sum of fresh ciphertexts (twelve deviations).

    For up to ``max_parties`` ciphertexts under a key of up to ``max_parties`` parties.
    """
    parties = preset.max_parties
    return _TAIL * math.sqrt(parties) * fresh_noise_std(preset.poly_modulus_degree, parties)


def smudging_bits(preset: CkksPreset) -> int:
    """``log2 E``: smudging noise is uniform in ``[-E, E]``, ``E >= 2^lambda * bound``."""
    return math.ceil(preset.smudging_bits + math.log2(aggregate_noise_bound(preset)))


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
            (51, 51),
            70,
            "asymmetric",
            "threshold",
            "ckks-threshold: N=4096, two 51-bit primes, scale 2^70, collective public key, "
            "t-of-n decryption shares smudged by 2^40 times the sum's noise (about 2^62), "
            "up to 1,024 parties",
            smudging_bits=40,
            max_parties=1024,
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
