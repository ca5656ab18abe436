"""What an encrypted update carries: its values, weighted, and a weight that checks the sum."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fedpriv.crypto.presets import CkksPreset, threshold_error_std
from fedpriv.errors import AggregateRejectedError, BoundError, ConfigError

# Decrypted weights are sums of integers (sample counts): within this of one, else garbage.
WEIGHT_TOLERANCE = {"weights": 1e-3, "drift": 0.2}
# Evaluation metrics a client encrypts: its mean loss and its accuracy (weighted by records).
NUM_METRICS = 2
# Standard deviation of the encryption noise per slot of one fresh ciphertext, in units of
# the scale (measured with SEAL 4.3 at N=4096: 147; tests/unit/test_packed.py keeps this true).
NOISE_STD = 147.0
# Largest mean loss an evaluation carries under the drift encoding (a diverged model's loss is
# reported as this much).
LOSS_CAP = 64.0


@dataclass(frozen=True)
class UpdateEncoding:
    """How a client turns (values, weight) into the slots it encrypts, and back after the sum.

    Two encodings, chosen by the preset:

    * **weights** (the ``seal`` and ``tenseal`` backends): ``[w * values, w]``. The sum's
      magnitude is the sum of weights times the largest value, which a large prime covers.
    * **drift** (the ``packed`` backend): ``[w/W * (values - reference), w/W, w/W, w/W]``,
      where ``reference`` is the model every party rebuilds from the run's seed, so that
      clients need no state between rounds. A drift is bounded by ``bound`` (the run-config
      key ``ckks-update-bound``; a client refuses to send more), and ``W`` scales the
      weights so that the largest possible sum just fills the preset's capacity:
      ``(max_total_weight * bound + headroom) / W = sum_bound``. The three weight slots must
      agree after decryption: a sum under another key, or a corrupt one, fails that check.

    Precision follows from the prime, not the scale: the encryption noise of a sum of K
    uploads (standard deviation ``NOISE_STD * sqrt(K)`` in units of the scale per slot) is
    divided by ``sum of weights / W`` (:meth:`error_std`); a larger scale shrinks the
    capacity, so ``W`` grows by as much.

    Parameters
    ----------
    preset : CkksPreset
        The CKKS parameters.
    bound : float
        Largest ``|value - reference|`` a client may send (drift encoding).
    max_total_weight : float
        Largest sum of weights a round can have (the number of training records, or of
        clients where each weighs one).
    headroom : float
        Magnitude the server may add to a sum of values before release (DP noise).
    num_clients : int
        Most updates one sum can hold (the weights encoding's per-client bound).

    """

    preset: CkksPreset
    bound: float = 4.0
    max_total_weight: float = 1.0
    headroom: float = 0.0
    num_clients: int = 1

    def __post_init__(self) -> None:
        if not self.bound > 0 or not self.max_total_weight > 0 or self.headroom < 0:
            raise ConfigError(
                "an update encoding needs ckks-update-bound > 0, a positive total weight and "
                f"headroom >= 0 (got {self.bound}, {self.max_total_weight}, {self.headroom})"
            )
        if self.preset.drift and not 2**-60 <= self.unit <= 2**40:
            raise ConfigError(
                f"ckks-update-bound {self.bound:g} with a total weight of "
                f"{self.max_total_weight:g} does not fit preset {self.preset.name}"
            )

    @property
    def kind(self) -> str:
        """``drift`` or ``weights``."""
        return "drift" if self.preset.drift else "weights"

    @property
    def unit(self) -> float:
        """``W``: the weight encoded as one (1 under the weights encoding).

        The largest possible sum of a round then just fills the preset's capacity, so that
        the encryption noise is as small as the prime allows relative to the values.
        """
        if not self.preset.drift:
            return 1.0
        return (self.max_total_weight * self.bound + self.headroom) / self.preset.sum_bound

    def error_std(
        self, num_updates: int, total_weight: float, decrypting: int | None = None
    ) -> float:
        """Standard deviation of the error of one value of a decrypted weighted mean.

        ``num_updates`` ciphertexts were summed; their weights add up to ``total_weight``;
        under a threshold preset ``decrypting`` parties (by default as many) gave shares
        (:func:`~fedpriv.crypto.presets.threshold_error_std`). The noise of a single key's
        ciphertexts was measured for symmetric encryption at N=4096; for other presets
        (public keys) this is NaN: measure instead.
        """
        if self.preset.backend == "threshold":
            noise = threshold_error_std(
                self.preset, num_updates, num_updates if decrypting is None else decrypting
            )
            return noise * self.unit / total_weight
        if self.preset.encryption != "symmetric" or self.preset.poly_modulus_degree != 4096:
            return math.nan
        noise = NOISE_STD * math.sqrt(max(num_updates, 1)) / 2.0**self.preset.scale_bits
        return noise * self.unit / total_weight

    def size(self, num_values: int) -> int:
        """Slots of the payload of ``num_values`` values."""
        return num_values + self.preset.check_slots

    def payload(
        self,
        values: np.ndarray,
        weight: float,
        reference: np.ndarray | None = None,
        noise: np.ndarray | None = None,
    ) -> np.ndarray:
        """The slots a client encrypts for ``values`` of weight ``weight``.

        ``noise`` (a client's share of a sum's DP noise) is added to the values after the
        bound is checked: the sum's ``headroom`` carries it.

        Raises
        ------
        BoundError
            If a value is NaN/inf, or beyond what the encoding carries without CKKS wrapping
            around silently; the message names the bound and the key that raises it.

        """
        values = np.asarray(values, dtype=np.float64).ravel()
        if not np.all(np.isfinite(values)):
            bad = int(np.count_nonzero(~np.isfinite(values)))
            raise BoundError(f"update holds {bad} NaN/inf value(s); refusing to encrypt it")
        if not self.preset.drift:
            if noise is not None:
                raise ConfigError("noise shares need the drift encoding (a packed preset)")
            payload = np.append(values * weight, float(weight))
            self._check_weights(payload)
            return payload
        drift = values - (0.0 if reference is None else np.asarray(reference, dtype=np.float64))
        peak = float(np.max(np.abs(drift))) if drift.size else 0.0
        if peak > self.bound:
            raise BoundError(
                f"update value drifts {peak:.4g} from the seed's initial model, beyond "
                f"ckks-update-bound {self.bound:g} of preset {self.preset.name}; raise "
                "ckks-update-bound (each doubling costs one bit of precision)"
            )
        if noise is not None:
            drift = drift + np.asarray(noise, dtype=np.float64)
        scaled = weight / self.unit
        return np.concatenate([drift * scaled, np.full(self.preset.check_slots, scaled)])

    def _check_weights(self, payload: np.ndarray) -> None:
        bound = self.preset.client_bound(self.num_clients)
        peak = float(np.max(np.abs(payload))) if payload.size else 0.0
        if peak > bound:
            raise BoundError(
                f"update value {peak:.6g} exceeds the safe bound {bound:.6g} of CKKS preset "
                f"{self.preset.name} for a sum over {self.num_clients} clients (sum bound "
                f"{self.preset.sum_bound:.6g}); CKKS would wrap around silently"
            )

    def mean(
        self, payload: np.ndarray, reference: np.ndarray | None = None
    ) -> tuple[np.ndarray, float]:
        """The weighted mean of the values in a decrypted sum, and the total weight.

        Raises
        ------
        AggregateRejectedError
            If the weight slots are no plausible sum of weights: the aggregate is corrupt or
            was encrypted under another key.

        """
        slots = self.preset.check_slots
        weights = payload[-slots:] * self.unit
        total = float(weights[0])
        tolerance = WEIGHT_TOLERANCE[self.kind]
        plausible = (
            np.all(np.isfinite(weights))
            and total > 0.5
            and abs(total - round(total)) < tolerance
            and float(np.max(np.abs(weights - total))) < tolerance
            and total <= self.max_total_weight + 0.5
        )
        if not plausible:
            raise AggregateRejectedError(
                f"decrypted total weight {total:.6g} is not a sum of sample counts: the "
                "aggregate is corrupt or was encrypted under another key"
            )
        values = payload[:-slots] * self.unit / round(total)
        if self.preset.drift and reference is not None:
            values = values + np.asarray(reference, dtype=np.float64)
        return values, float(round(total))
