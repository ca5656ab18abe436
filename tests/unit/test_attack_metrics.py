import numpy as np
import pytest

from fedpriv.attacks.metrics import (
    image_metrics,
    match_reconstructions,
    membership_metrics,
    tpr_at_fpr,
)


def test_roc_metrics_against_hand_computed_values():
    # members score 0.9, 0.8, 0.4; non-members 0.7, 0.3, 0.2, 0.1
    scores = np.array([0.9, 0.8, 0.4, 0.7, 0.3, 0.2, 0.1])
    member = np.array([1, 1, 1, 0, 0, 0, 0], dtype=bool)
    m = membership_metrics(scores, member)
    # Pairs (member > non-member): 0.9 beats 4, 0.8 beats 4, 0.4 beats 3 -> 11 of 12.
    assert m.auc == pytest.approx(11 / 12)
    # Threshold 0.8: TPR 2/3 at FPR 0 -> advantage 2/3; threshold 0.4: 1 - 1/4 = 0.75.
    assert m.advantage == pytest.approx(0.75)
    assert m.tpr_at_1pct_fpr == pytest.approx(2 / 3)
    assert m.tpr_at_0_1pct_fpr == pytest.approx(2 / 3)


def test_tpr_at_fixed_fpr_picks_the_best_point_not_above_it():
    fpr = np.array([0.0, 0.0005, 0.001, 0.02, 1.0])
    tpr = np.array([0.0, 0.10, 0.25, 0.60, 1.0])
    assert tpr_at_fpr(fpr, tpr, 0.001) == 0.25
    assert tpr_at_fpr(fpr, tpr, 0.01) == 0.25
    assert tpr_at_fpr(fpr, tpr, 0.0001) == 0.0


def test_random_scores_give_auc_near_half():
    rng = np.random.default_rng(0)
    m = membership_metrics(rng.random(4000), rng.random(4000) < 0.5)
    assert abs(m.auc - 0.5) < 0.03


def test_psnr_of_known_images():
    truth = np.zeros((1, 8, 8))
    noisy = truth + 0.1  # MSE 0.01 -> PSNR = 10 log10(1 / 0.01) = 20 dB
    m = image_metrics(noisy, truth)
    assert m.mse == pytest.approx(0.01)
    assert m.psnr == pytest.approx(20.0)
    assert image_metrics(truth + 0.01, truth).psnr == pytest.approx(40.0)
    same = image_metrics(np.full((1, 28, 28), 0.5), np.full((1, 28, 28), 0.5))
    assert same.ssim == pytest.approx(1.0) and same.mse == 0.0


def test_ssim_drops_for_unrelated_images():
    rng = np.random.default_rng(1)
    a, b = rng.random((1, 28, 28)), rng.random((1, 28, 28))
    assert image_metrics(a, b).ssim < 0.1 < image_metrics(a, a * 0.9 + 0.05).ssim


def test_matching_pairs_each_reconstruction_with_its_record():
    truths = np.stack([np.full((1, 4, 4), v) for v in (0.1, 0.5, 0.9)])
    recs = truths[[2, 0, 1]] + 0.01
    assert sorted(match_reconstructions(recs, truths)) == [(0, 2), (1, 0), (2, 1)]


def test_rmia_ranks_a_planted_member_first():
    """A record the target fits far better than its references did is ranked a member."""
    import numpy as np

    from fedpriv.attacks.membership import ShadowSet, rmia_scores

    labels = np.zeros(6, dtype=np.int64)
    # Two classes; every model gives record i probability p of its (true) label 0.
    target = np.array([[0.99, 0.01], [0.6, 0.4], [0.6, 0.4], [0.6, 0.4], [0.6, 0.4], [0.6, 0.4]])
    references = np.stack([np.tile([0.6, 0.4], (6, 1))] * 2)
    shadows = ShadowSet(references, np.zeros((2, 6), dtype=bool))
    population = np.arange(1, 6)
    for online in (False, True):
        scores = rmia_scores(target, labels, shadows, population, [0, 1], online)
        assert scores[0] == 1.0 and (scores[1:] == 0.0).all()


def test_low_fpr_rates_say_when_they_rest_on_no_false_positive():
    import numpy as np

    from fedpriv.attacks.metrics import membership_metrics

    scores = np.linspace(0, 1, 300)
    members = np.arange(300) >= 150
    metrics = membership_metrics(scores, members)
    assert metrics.non_members == 150 and metrics.resolved(0.01)
    assert not metrics.resolved(0.001) and not metrics.resolved(0.0001)
    assert metrics.tpr_at_0_01pct_fpr == metrics.tpr_at_0_1pct_fpr == 1.0


def _answers(seed: int, records: int = 200, classes: int = 10) -> np.ndarray:
    logits = np.random.default_rng(seed).normal(0, 2, (records, classes))
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def test_label_blind_attacks_agree_with_a_direct_computation_and_ignore_labels():
    """Confidence, entropy and ML-Leaks read the answer only: their scores equal the formula
    (and, for ML-Leaks, an MLP trained directly on the shadows' sorted top-3 posteriors)
    and do not move when the labels are shuffled; the label-aware loss does."""
    from sklearn.neural_network import MLPClassifier

    from fedpriv.attacks.membership import ShadowSet, ml_leaks_scores, threshold_scores
    from fedpriv.attacks.membership_attacks import MembershipAttack
    from fedpriv.attacks.registry import ATTACKS

    answers = _answers(0)
    labels = np.random.default_rng(1).integers(0, 10, len(answers))
    shuffled = np.random.default_rng(2).permutation(labels)
    assert np.array_equal(threshold_scores("confidence", answers, labels), answers.max(axis=1))
    entropy = (answers * np.log(answers)).sum(axis=1)
    assert np.allclose(threshold_scores("entropy", answers, labels), entropy)
    # Shadows on which members (the first half of the pool) get peaked answers.
    rng = np.random.default_rng(3)
    included = np.zeros((4, len(answers)), bool)
    included[:, : len(answers) // 2] = True
    probabilities = np.stack([_answers(10 + i) for i in range(4)])
    probabilities[included] = _answers(20)[: included.sum() // 4].repeat(4, axis=0) ** 3
    probabilities /= probabilities.sum(axis=2, keepdims=True)
    shadows = ShadowSet(probabilities, included)
    scores = ml_leaks_scores(answers, shadows, seed=5)
    features = np.concatenate([-np.sort(-p, axis=1)[:, :3] for p in probabilities])
    direct = MLPClassifier(hidden_layer_sizes=(64,), max_iter=500, random_state=5)
    direct.fit(features, included.reshape(-1))
    expected = direct.predict_proba(-np.sort(-answers, axis=1)[:, :3])[:, 1]
    assert np.array_equal(scores, expected)
    del rng
    for name in ("confidence", "entropy"):
        assert np.array_equal(
            threshold_scores(name, answers, labels), threshold_scores(name, answers, shuffled)
        )
    assert not np.array_equal(
        threshold_scores("loss", answers, labels), threshold_scores("loss", answers, shuffled)
    )
    blind = {n for n in ATTACKS if issubclass(c := ATTACKS.load(n), MembershipAttack)
             and not c.uses_labels}  # fmt: skip
    assert blind == {"confidence", "entropy", "ml-leaks"}
