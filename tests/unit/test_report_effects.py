"""Effect sentences: a difference is an effect only where the seeds' intervals separate."""

from __future__ import annotations

from fedpriv.attacks.results import AttackResult, Family, MembershipMetrics, Status, Threat
from fedpriv.config import RunConfig
from fedpriv.history import History
from fedpriv.report.narrative import effect
from fedpriv.report.results import ArmResult, Headline, headline


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
