"""Effect sentences: a difference is an effect only where the seeds' intervals separate."""

from __future__ import annotations

from fedpriv.attacks.results import AttackResult, Family, MembershipMetrics, Status, Threat
from fedpriv.config import RunConfig
from fedpriv.history import History
from fedpriv.report.headline import headline
from fedpriv.report.narrative import effect
from fedpriv.report.results import ArmResult, Headline


def _arm(name: str, blind: float, aware: float, seeds: list[int], spread: float) -> ArmResult:
    return ArmResult(
        name,
        RunConfig(),
        "",
        History([]),
        {},
        Headline(label_blind_auc=blind, label_aware_auc=aware),
        seeds=seeds,
        spread={"label_blind_auc": spread, "label_aware_auc": spread} if len(seeds) > 1 else {},
    )


def test_an_effect_is_claimed_only_beyond_the_seeds_spread():
    base = _arm("plaintext", 0.80, 0.75, [0, 1, 2], 0.01)
    guarded = _arm("memguard", 0.60, 0.745, [0, 1, 2], 0.01)
    lowered = effect(guarded, base, "label_blind_auc", "the strongest label-blind AUC")
    assert "lower by 0.200" in lowered and "an effect" in lowered and "no effect" not in lowered
    kept = effect(guarded, base, "label_aware_auc", "the strongest label-aware AUC")
    assert "no effect is claimed" in kept
    # 0.015 apart with half-widths 0.01 each: past the half-widths' hypot (0.014) but the
    # intervals [0.725, 0.745] and [0.74, 0.76] overlap: no effect.
    near = effect(_arm("m", 0.6, 0.735, [0, 1, 2], 0.01), base, "label_aware_auc", "x")
    assert "the intervals overlap" in near
    apart = effect(_arm("m", 0.6, 0.725, [0, 1, 2], 0.01), base, "label_aware_auc", "x")
    assert "the intervals separate: an effect" in apart
    one_seed = effect(_arm("m", 0.6, 0.7, [0], 0.0), _arm("p", 0.8, 0.7, [0], 0.0),
                      "label_blind_auc", "the strongest label-blind AUC")  # fmt: skip
    assert "one seed" in one_seed and "no measured effect" in one_seed


def test_the_headline_splits_membership_attacks_by_whether_they_read_labels(tmp_path):
    def result(name: str, auc: float) -> AttackResult:
        metrics = MembershipMetrics(auc, 0.0, 0.0, 0.0, 10, 10)
        return AttackResult(
            name, Threat.OUTSIDER, Family.MEMBERSHIP, Status.SCORED, metrics=metrics
        )

    aucs = {"loss": 0.7, "ml-leaks": 0.65, "confidence": 0.6, "lira-online": 0.72}
    attacks = {name: result(name, auc) for name, auc in aucs.items()}
    arm = ArmResult("a", RunConfig(), str(tmp_path), History([]), {Threat.OUTSIDER: attacks})
    h = headline(arm)
    assert (h.label_blind_attack, h.label_blind_auc) == ("ml-leaks", 0.65)
    assert (h.label_aware_attack, h.label_aware_auc) == ("lira-online", 0.72)


def test_a_paired_drop_is_an_effect_where_its_interval_excludes_zero():
    from fedpriv.report.narrative import paired_effect

    what = "MemGuard's drop of the strongest label-blind AUC on the same model"
    arm = _arm("memguard", 0.6, 0.7, [0, 1, 2], 0.0)
    arm.headline.label_blind_auc_drop, arm.spread = 0.05, {"label_blind_auc_drop": 0.02}
    sentence = paired_effect(arm, "label_blind_auc_drop", what)
    assert sentence.startswith("MemGuard's drop") and "+0.050" in sentence
    assert "excludes zero: an effect" in sentence
    arm.spread = {"label_blind_auc_drop": 0.08}
    assert "includes zero: no effect" in paired_effect(arm, "label_blind_auc_drop", what)
    assert "was not measured" in paired_effect(arm, "label_aware_auc_drop", what)


def test_the_drop_is_measured_on_the_same_model_without_the_defense(tmp_path):
    from fedpriv.report.headline import _drop

    def result(auc: float) -> AttackResult:
        metrics = MembershipMetrics(auc, 0.0, 0.0, 0.0, 10, 10)
        return AttackResult(
            "ml-leaks", Threat.OUTSIDER, Family.MEMBERSHIP, Status.SCORED, metrics=metrics
        )

    assert _drop(result(0.80), result(0.55)) == 0.80 - 0.55
    assert _drop(None, result(0.55)) is None
