"""An arm's headline numbers: derived from its attack results and history, summarized over seeds."""

from __future__ import annotations

import dataclasses
import math
import statistics
from pathlib import Path

import numpy as np
from scipy import stats

from fedpriv.attacks.registry import ATTACKS
from fedpriv.attacks.results import AttackResult, Family, Json, Threat
from fedpriv.attacks.runner import read_results
from fedpriv.report.results import ArmResult, Headline
from fedpriv.rundir import coalition_dir, undefended_dir
from fedpriv.schemes.base import load_scheme


def uses_labels(result: AttackResult) -> bool:
    """Whether a membership attack reads the records' true labels (its class says)."""
    return bool(getattr(ATTACKS.load(result.attack), "uses_labels", True))


def headline(arm: ArmResult) -> Headline:
    """An arm's own numbers (the ratios to the baseline are filled in by the caller)."""
    rounds = arm.history.rounds
    # The strongest inversion of each threat (a maximum over ig, dlg and idlg: biased upward,
    # as the report says); where none scored, ig's result says why.
    server_ig = arm.strongest(Threat.CURIOUS_SERVER, Family.RECONSTRUCTION) or arm.attack(
        Threat.CURIOUS_SERVER, "ig"
    )
    colluder_ig = arm.strongest(Threat.COLLUDING_CLIENT, Family.RECONSTRUCTION) or arm.attack(
        Threat.COLLUDING_CLIENT, "ig"
    )
    malicious = arm.strongest(Threat.MALICIOUS_SERVER, Family.RECONSTRUCTION) or arm.attack(
        Threat.MALICIOUS_SERVER, "ig"
    )
    strongest = arm.strongest(Threat.OUTSIDER, Family.MEMBERSHIP)
    blind = arm.strongest(Threat.OUTSIDER, Family.MEMBERSHIP, lambda r: not uses_labels(r))
    aware = arm.strongest(Threat.OUTSIDER, Family.MEMBERSHIP, uses_labels)
    bare = undefended(arm)
    bare_blind = bare.strongest(Threat.OUTSIDER, Family.MEMBERSHIP, lambda r: not uses_labels(r))
    bare_aware = bare.strongest(Threat.OUTSIDER, Family.MEMBERSHIP, uses_labels)
    label_only = arm.attack(Threat.OUTSIDER, "label-only")
    shokri = arm.attack(Threat.OUTSIDER, "shokri")
    mi_face = arm.attack(Threat.OUTSIDER, "mi-face")
    defended = next(
        (r.defense for r in arm.attacks.get(Threat.OUTSIDER, {}).values() if r.defense), None
    )
    client_server = arm.attack(Threat.CURIOUS_SERVER, "client-membership")
    client_outsider = arm.attack(Threat.OUTSIDER, "client-membership")
    last = rounds[-1] if rounds else None
    threshold = load_scheme(arm.config).decrypting_coalition()
    below = _coalition(arm, threshold - 1) if threshold >= 2 else None
    at = _coalition(arm, threshold) if threshold >= 2 else None
    return Headline(
        coalition_threshold=threshold,
        coalition_below_psnr=below.headline() if below else None,
        coalition_below_reason=below.reason if below else None,
        coalition_below_target=_target(below),
        coalition_at_psnr=at.headline() if at else None,
        coalition_at_reason=at.reason if at else None,
        coalition_at_target=_target(at),
        final_accuracy=last.accuracy if last else None,
        # The median: round 1 also pays for Ray's start and the first imports.
        seconds_per_round=statistics.median([r.seconds for r in rounds]) if rounds else 0.0,
        bytes_per_round=_mean([r.bytes_up + r.bytes_down for r in rounds]),
        bytes_up_per_round=_mean([r.bytes_up for r in rounds]),
        dp_epsilon=last.dp_epsilon if last else None,
        server_inversion_psnr=server_ig.headline() if server_ig else None,
        server_inversion_status=str(server_ig.status) if server_ig else None,
        server_inversion_reason=server_ig.reason if server_ig else None,
        server_inversion_attack=server_ig.attack if server_ig else None,
        server_inversion_target=_target(server_ig),
        colluder_inversion_psnr=colluder_ig.headline() if colluder_ig else None,
        colluder_inversion_reason=colluder_ig.reason if colluder_ig else None,
        colluder_inversion_attack=colluder_ig.attack if colluder_ig else None,
        colluder_inversion_target=_target(colluder_ig),
        malicious_inversion_psnr=malicious.headline() if malicious else None,
        malicious_inversion_attack=malicious.attack if malicious else None,
        malicious_plan=(
            str((malicious.settings or {}).get("adversary") or "") or None if malicious else None
        ),
        malicious_recovered=(
            getattr(malicious.metrics, "recovered_fraction", None) if malicious else None
        ),
        malicious_reason=malicious.reason if malicious else None,
        membership_attack=strongest.attack if strongest else None,
        membership_auc=strongest.headline() if strongest else None,
        membership_tpr_0_1=(
            getattr(strongest.metrics, "tpr_at_0_1pct_fpr", None) if strongest else None
        ),
        label_only_auc=label_only.headline() if label_only else None,
        shokri_auc=shokri.headline() if shokri else None,
        label_blind_attack=blind.attack if blind else None,
        label_blind_auc=blind.headline() if blind else None,
        label_aware_attack=aware.attack if aware else None,
        label_aware_auc=aware.headline() if aware else None,
        label_blind_auc_drop=_drop(bare_blind, blind),
        label_aware_auc_drop=_drop(bare_aware, aware),
        model_inversion_accuracy=mi_face.headline() if mi_face else None,
        memguard_l1=_float(defended.get("mean_l1_distortion")) if defended else None,
        rmia_auc=max(
            (
                r.headline() or 0.0
                for n in ("rmia-offline", "rmia-online")
                if (r := arm.attack(Threat.OUTSIDER, n)) is not None and r.scored
            ),
            default=None,
        ),  # fmt: skip
        client_membership_server_auc=client_server.headline() if client_server else None,
        client_membership_server_reason=client_server.reason if client_server else None,
        client_membership_outsider_auc=client_outsider.headline() if client_outsider else None,
        audit_epsilon=_float(arm.audit.get("empirical_epsilon")) if arm.audit else None,
        audit_estimate=_float(arm.audit.get("estimated_epsilon")) if arm.audit else None,
    )


def summarize(headlines: list[Headline]) -> tuple[Headline, dict[str, float]]:
    """Means of the seeds' numeric headline fields, and the half-widths of 95% intervals.

    A field missing (``None``) on some seed is averaged over the others; text fields (which
    attack was strongest, why one did not apply) are the first seed's.
    """
    first = headlines[0].numbers()
    means: dict[str, float] = {}
    spread: dict[str, float] = {}
    for key, value in first.items():
        if isinstance(value, str):
            continue
        values = [
            float(v)
            for h in headlines
            if isinstance(v := h.numbers()[key], int | float) and math.isfinite(v)
        ]
        if not values:
            continue
        means[key] = float(np.mean(values))
        if len(values) > 1:
            spread[key] = float(
                stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / np.sqrt(len(values))
            )
    summary = dataclasses.replace(headlines[0])
    for key, mean in means.items():
        setattr(summary, key, mean)
    return summary, spread


def undefended(arm: ArmResult) -> ArmResult:
    """The outsider's attacks on the arm's model without its query-time defense (if measured)."""
    folder = undefended_dir(Path(arm.run_dir))
    attacks = {Threat.OUTSIDER: read_results(folder, Threat.OUTSIDER)} if folder.is_dir() else {}
    return ArmResult(f"{arm.name} (undefended)", arm.config, str(folder), arm.history, attacks)


def _drop(without: AttackResult | None, with_: AttackResult | None) -> float | None:
    """How much lower the defended headline is than the undefended one (``None``: unmeasured)."""
    if without is None or with_ is None:
        return None
    before, after = without.headline(), with_.headline()
    return None if before is None or after is None else before - after


def _target(result: AttackResult | None) -> str | None:
    """What an inversion ran on (client updates, aggregates), as its settings record."""
    return str(result.settings.get("target")) if result and result.settings else None


def _coalition(arm: ArmResult, colluders: int) -> AttackResult | None:
    """The ig result of a coalition of ``colluders`` clients, stored beside the arm's run."""
    folder = coalition_dir(Path(arm.run_dir), colluders)
    return read_results(folder, Threat.COLLUDING_CLIENT).get("ig") if folder.is_dir() else None


def relate(arm: Headline, baseline: Headline) -> None:
    """Fill in ``arm``'s costs relative to the baseline arm."""
    arm.bytes_vs_plaintext = _ratio(arm.bytes_per_round, baseline.bytes_per_round)
    arm.seconds_vs_plaintext = _ratio(arm.seconds_per_round, baseline.seconds_per_round)
    if arm.final_accuracy is not None and baseline.final_accuracy is not None:
        arm.accuracy_cost = baseline.final_accuracy - arm.final_accuracy


def _mean(values: list[int]) -> float:
    return float(statistics.fmean(values)) if values else 0.0


def _ratio(value: float, base: float) -> float | None:
    return value / base if base else None


def _float(value: Json) -> float | None:
    if value == "inf":
        return float("inf")
    return float(value) if isinstance(value, int | float) else None
