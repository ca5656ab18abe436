"""Running the benchmark: every measurement of the settings, into one typed result."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fedpriv.bench.authentication import AuthenticationCost, measure_authentication
from fedpriv.bench.crypto import (
    Measure,
    PrecisionRow,
    SizeRow,
    compare_size,
    measure_ckks,
    measure_precision,
)
from fedpriv.bench.deployment import DeployResult
from fedpriv.bench.federation import EndToEndResult, ScaleResult, measure_end_to_end
from fedpriv.bench.settings import BenchSettings
from fedpriv.bench.threshold import (
    ThresholdVerificationCost,
    measure_threshold,
    measure_threshold_verification,
)
from fedpriv.crypto.presets import get_preset
from fedpriv.provenance import command, commit, today


@dataclass
class BenchResult:
    """Everything one `fedpriv bench` measured, and where it ran."""

    sizes: list[SizeRow]
    precision: list[PrecisionRow]
    authentication: list[AuthenticationCost] = field(default_factory=list)
    threshold_verification: list[ThresholdVerificationCost] = field(default_factory=list)
    end_to_end: EndToEndResult | None = None
    scale: ScaleResult | None = None
    deploy: DeployResult | None = None
    machine: dict[str, Any] = field(default_factory=lambda: {"cpus": os.cpu_count()})
    provenance: dict[str, str] = field(
        default_factory=lambda: {"command": command(), "commit": commit(), "generated": today()}
    )

    def to_json(self) -> dict[str, Any]:
        """What ``bench.json`` holds."""
        data: dict[str, Any] = {
            **self.provenance,
            "machine": self.machine,
            "sizes": [row.to_json() for row in self.sizes],
            "precision": [asdict(row) for row in self.precision],
            "authentication": [row.to_json() for row in self.authentication],
            "threshold_verification": [row.to_json() for row in self.threshold_verification],
        }
        if self.end_to_end is not None:
            data["end_to_end"] = self.end_to_end.to_json()
        if self.scale is not None:
            data["scale"] = self.scale.to_json()
        if self.deploy is not None:
            data["deploy"] = self.deploy.to_json()
        return data


def measure_for(preset: str) -> Measure:
    """How a preset's arm is measured: threshold CKKS has its own round trip."""
    return measure_threshold if get_preset(preset).backend == "threshold" else measure_ckks


def run_bench(
    settings: BenchSettings, out: Path, progress: Callable[[str], None] | None = None
) -> BenchResult:
    """Run every measurement of ``settings``."""
    say = progress or (lambda _message: None)
    rows = []
    for size in settings.sizes:
        for preset in settings.presets:
            if get_preset(preset).backend == "tenseal" and size > settings.tenseal_max_size:
                continue
            say(f"{preset}: {size:,} parameters x {settings.clients} clients")
            rows.append(compare_size(preset, size, settings.clients, measure_for(preset)))
    say(f"precision: {settings.precision_clients} clients")
    precision = [
        measure_precision(
            p,
            min(settings.precision_clients, settings.threshold_clients)
            if get_preset(p).backend == "threshold"
            else settings.precision_clients,
            settings.precision_size,
            measure_for(p),
        )
        for p in settings.presets
    ]
    result = BenchResult(rows, precision)
    for size in settings.sizes:
        for preset in settings.presets:
            if get_preset(preset).backend == "packed":
                say(f"{preset}: authenticated against unauthenticated, {size:,} parameters")
                result.authentication.append(measure_authentication(preset, size, settings.clients))
            if get_preset(preset).backend == "threshold":
                say(f"{preset}: signed uploads and verified sums, {size:,} parameters")
                result.threshold_verification.append(
                    measure_threshold_verification(preset, size, settings.clients)
                )
    if settings.end_to_end is not None:
        say("end to end: plaintext and ckks federations")
        result.end_to_end = measure_end_to_end(settings.end_to_end, out)
    return result
