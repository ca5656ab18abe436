"""What a server with colluding threshold parties reads: nothing individual below t shares."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np

from fedpriv.config import RunConfig
from fedpriv.crypto.encoding import UpdateEncoding
from fedpriv.crypto.packing import deserialize_update, expected_layout
from fedpriv.crypto.presets import get_preset
from fedpriv.crypto.shamir import reconstruct
from fedpriv.crypto.threshold import ThresholdCkks
from fedpriv.crypto.thresholdwire import ThresholdWire
from fedpriv.errors import AggregateRejectedError, ConfigError
from fedpriv.rundir import RunDirectory
from fedpriv.schemes.sight import ObservedUpdate, Sight
from fedpriv.schemes.threshold.messages import encoding
from fedpriv.schemes.threshold.party import SHARES_DIR, read_held
from fedpriv.wire import arrays_of


class ThresholdSight(Sight):
    """The server with ``colluders`` parties' Shamir shares.

    Fewer than ``t`` shares of a party's secret decrypt nothing of its uploads: updates stay
    hidden and only the aggregates (which the server reads anyway) are visible. With ``t``
    or more, the coalition reconstructs every dealer's secret and decrypts every upload.
    """

    def __init__(
        self,
        rundir: RunDirectory,
        config: RunConfig,
        colluders: int,
        key_dir: str | Path | None,
    ) -> None:
        super().__init__(rundir, config)
        self.colluders = colluders
        self.key_dir = Path(key_dir or config.key_dir or rundir.key_dir)
        self.threshold = config.decryption_threshold
        self.ckks = ThresholdCkks(get_preset(config.threshold_preset))

    @cached_property
    def encoding(self) -> UpdateEncoding:
        """The run's upload encoding (read only where a coalition decrypts uploads)."""
        return encoding(self.config)

    def updates_hidden(self) -> str | None:
        """Hidden below ``t`` colluders (or without a server view)."""
        if self.colluders < self.threshold:
            return (
                f"threshold CKKS: the server with {self.colluders} colluding client(s) holds "
                f"{self.colluders} share(s) of each party's secret; decrypting an individual "
                f"update needs {self.threshold}"
            )
        return super().updates_hidden()

    def global_model(self, server_round: int) -> np.ndarray:
        """The plaintext model broadcast at the start of ``server_round``."""
        return super().global_model(server_round)

    def _secrets(self) -> tuple[bytes, list[np.ndarray]]:
        """The setup's seed and every dealer's secret, reconstructed from the coalition's shares."""
        folder = self.key_dir / SHARES_DIR
        paths = sorted(folder.glob("party-*.npz"))[: self.colluders]
        if len(paths) < self.threshold:
            raise ConfigError(
                f"{folder} holds {len(paths)} parties' shares; the coalition needs {self.threshold}"
            )
        crs = b""
        by_dealer: dict[int, dict[int, np.ndarray]] = {}
        for path in paths:
            crs, held = read_held(path)
            holder = int(path.stem.split("-")[1])
            for dealer, share in held.items():
                by_dealer.setdefault(dealer, {})[holder] = share
        return crs, [reconstruct(shares, self.ckks.primes) for shares in by_dealer.values()]

    def updates(self, server_round: int) -> list[ObservedUpdate]:
        """Every upload of the round, decrypted with the reconstructed secrets.

        An upload does not name its party: the coalition tries each reconstructed secret on
        the upload's last ciphertext, whose weight slots decode to one plausible weight
        only under the right one.
        """
        self._require(self.updates_hidden())
        before = self.global_model(server_round)
        crs, secrets = self._secrets()
        wire = ThresholdWire(self.ckks)
        size = self.encoding.size(before.size)
        layout = expected_layout(size, wire.preset)
        a = self.ckks.round_polynomials(crs, server_round, len(layout))
        observed = []
        for name, path in self.rundir.view_files(server_round, "train-recv-").items():
            parsed = deserialize_update(
                arrays_of(self.rundir.read_payload(path)), wire, wire.preset, size
            )
            for secret in secrets:
                payload = np.concatenate(
                    [
                        self.ckks.decrypt_with_secret(c.c0, a[k], secret, n)
                        for k, (c, n) in enumerate(zip(parsed, layout, strict=True))
                    ]
                )
                try:
                    after, weight = self.encoding.mean(payload, before)
                except AggregateRejectedError:
                    continue
                observed.append(
                    ObservedUpdate(
                        server_round,
                        int(name.rsplit("-", 1)[1]),
                        before,
                        after,
                        round(weight),
                        None,
                    )  # fmt: skip
                )
                break
        return observed
