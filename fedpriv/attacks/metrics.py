"""Attack metrics as the literature reports them (scikit-learn and scikit-image compute)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from sklearn.metrics import roc_auc_score, roc_curve

from fedpriv.attacks.results import MembershipMetrics, RocCurve


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, max_fpr: float) -> float:
    """Highest true-positive rate among ROC points whose false-positive rate is <= ``max_fpr``.

    With fewer than ``1 / max_fpr`` negatives the only such points have FPR 0, which is the
    honest reading of "TPR at 0.1% FPR" on a small evaluation set.
    """
    allowed = fpr <= max_fpr + 1e-12
    return float(tpr[allowed].max()) if allowed.any() else 0.0


def membership_metrics(scores: np.ndarray, is_member: np.ndarray) -> MembershipMetrics:
    """ROC AUC, advantage (max TPR - FPR), TPR at 1% / 0.1% / 0.01% FPR; higher = member."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(is_member, dtype=bool)
    fpr, tpr, _ = roc_curve(labels, scores)
    return MembershipMetrics(
        auc=float(roc_auc_score(labels, scores)),
        advantage=float(np.max(tpr - fpr)),
        tpr_at_1pct_fpr=tpr_at_fpr(fpr, tpr, 0.01),
        tpr_at_0_1pct_fpr=tpr_at_fpr(fpr, tpr, 0.001),
        members=int(labels.sum()),
        non_members=int((~labels).sum()),
        tpr_at_0_01pct_fpr=tpr_at_fpr(fpr, tpr, 0.0001),
    )


def roc_points(scores: np.ndarray, is_member: np.ndarray) -> RocCurve:
    """The ROC curve's points, for plots."""
    fpr, tpr, _ = roc_curve(np.asarray(is_member, dtype=bool), np.asarray(scores, dtype=float))
    return RocCurve(fpr.tolist(), tpr.tolist())


# A record counts as recovered at this PSNR or above (Fowl et al. and the bar).
RECOVERED_PSNR = 30.0


@dataclass(frozen=True)
class ImageScore:
    """How close one reconstruction is to its true record."""

    mse: float
    psnr: float
    ssim: float


def image_metrics(reconstruction: np.ndarray, truth: np.ndarray) -> ImageScore:
    """MSE, PSNR (dB) and SSIM of one image against the truth; images in [0, 1], (C, H, W)."""
    rec = np.clip(np.asarray(reconstruction, dtype=np.float64), 0.0, 1.0)
    ref = np.asarray(truth, dtype=np.float64)
    mse = float(np.mean((rec - ref) ** 2))
    psnr = float(peak_signal_noise_ratio(ref, rec, data_range=1.0)) if mse > 0 else float("inf")
    side = min(ref.shape[-2:])
    win = min(7, side if side % 2 else side - 1)
    ssim = float(structural_similarity(ref, rec, data_range=1.0, channel_axis=0, win_size=win))
    return ImageScore(mse, psnr, ssim)


def match_reconstructions(reconstructions: np.ndarray, truths: np.ndarray) -> list[tuple[int, int]]:
    """Pair reconstructions with true records minimizing total MSE (Hungarian matching)."""
    rec = reconstructions.reshape(len(reconstructions), -1)
    ref = truths.reshape(len(truths), -1)
    cost = ((rec[:, None, :] - ref[None, :, :]) ** 2).mean(axis=2)
    rows, cols = linear_sum_assignment(cost)
    return list(zip(rows.tolist(), cols.tolist(), strict=True))
