"""What a server with colluding threshold parties reads: nothing individual below t shares."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fedpriv.config import RunConfig
from fedpriv.crypto.packing import deserialize_update, expected_layout
from fedpriv.crypto.presets import get_preset
from fedpriv.crypto.shamir import reconstruct
from fedpriv.crypto.threshold import Ciphertext, ThresholdCkks
from fedpriv.crypto.thresholdwire import ThresholdWire
from fedpriv.errors import ConfigError
from fedpriv.rundir import RunDirectory
from fedpriv.schemes.sight import ObservedUpdate, Sight
from fedpriv.schemes.threshold.messages import encoding
from fedpriv.schemes.threshold.party import SHARES_DIR
from fedpriv.schemes.threshold.state import poly_from
from fedpriv.wire import arrays_of


class ThresholdSight(Sight):
    """The server with ``colluders`` parties' Shamir shares.

    Fewer than ``t`` shares decrypt nothing individual: updates stay hidden and only the
    aggregates (which the server reads anyway) are visible. With ``t`` or more, the coalition
    reconstructs the collective secret and decrypts every upload.
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
        self.encoding = encoding(config)

    def updates_hidden(self) -> str | None:
        """Hidden below ``t`` colluders (or without a server view)."""
        if self.colluders < self.threshold:
            return (
                f"threshold CKKS: the server with {self.colluders} colluding client(s) holds "
                f"{self.colluders} share(s) of the collective secret; decrypting an individual "
                f"update needs {self.threshold}"
            )
        return super().updates_hidden()

    def global_model(self, server_round: int) -> np.ndarray:
        """The plaintext model broadcast at the start of ``server_round``."""
        return super().global_model(server_round)

    def _secret(self) -> np.ndarray:
        folder = self.key_dir / SHARES_DIR
        paths = sorted(folder.glob("party-*.bin"))[: self.colluders]
        if len(paths) < self.threshold:
            raise ConfigError(
                f"{folder} holds {len(paths)} parties' shares; the coalition needs {self.threshold}"
            )
        shape = (len(self.ckks.primes), self.ckks.n)
        shares = {int(p.stem.split("-")[1]): poly_from(p.read_bytes(), shape) for p in paths}
        return reconstruct(shares, self.ckks.primes)

    def updates(self, server_round: int) -> list[ObservedUpdate]:
        """Every upload of the round, decrypted with the reconstructed secret."""
        self._require(self.updates_hidden())
        before = self.global_model(server_round)
        secret = self._secret()
        wire = ThresholdWire(self.ckks)
        size = self.encoding.size(before.size)
        layout = expected_layout(size, wire.preset)
        observed = []
        for name, path in self.rundir.view_files(server_round, "train-recv-").items():
            parsed = deserialize_update(
                arrays_of(self.rundir.read_payload(path)), wire, wire.preset, size
            )
            payload = np.concatenate(
                [
                    self.ckks.decrypt_with_secret(Ciphertext(c.c0, c.c1), secret, n)
                    for c, n in zip(parsed, layout, strict=True)
                ]
            )
            after, weight = self.encoding.mean(payload, before)
            observed.append(
                ObservedUpdate(
                    server_round, int(name.rsplit("-", 1)[1]), before, after, round(weight), None
                )  # fmt: skip
            )
        return observed
