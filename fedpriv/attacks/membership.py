"""Membership inference on the released model: thresholds, shadow-model attacks, LiRA, RMIA.

One module: the attacks share the shadow models, the candidate pool and the score
conventions (higher = member) defined here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import norm
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.neural_network import MLPClassifier

from fedpriv.attacks.settings import MembershipSettings
from fedpriv.config import RunConfig
from fedpriv.data.datasets import load_dataset
from fedpriv.device import torch_device
from fedpriv.errors import ConfigError
from fedpriv.models import build_model
from fedpriv.training import model_logits, train

THRESHOLD_ATTACKS = ("loss", "confidence", "entropy", "label-only")
SHADOW_ATTACKS = (
    "shokri", "ml-leaks", "lira-offline", "lira-online", "rmia-offline", "rmia-online"
)  # fmt: skip
ATTACKS = THRESHOLD_ATTACKS + SHADOW_ATTACKS
_TINY = 1e-45


# -- per-record signals -----------------------------------------------------------------------
def cross_entropy(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-record cross-entropy loss from probability vectors."""
    p = probabilities[np.arange(len(labels)), labels].astype(np.float64)
    return np.asarray(-np.log(np.maximum(p, _TINY)))


def logit_confidence(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """LiRA's scaled confidence ``log p_y - log(sum_{j != y} p_j)``, stable near p_y = 1."""
    probs = probabilities.astype(np.float64)
    p_true = probs[np.arange(len(labels)), labels]
    others = probs.sum(axis=1) - p_true
    mask = np.ones_like(probs, dtype=bool)
    mask[np.arange(len(labels)), labels] = False
    others = np.where(others > 1e-6, others, (probs * mask).sum(axis=1))
    return np.asarray(np.log(np.maximum(p_true, _TINY)) - np.log(np.maximum(others, _TINY)))


def threshold_scores(attack: str, probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Membership scores of a global-threshold attack (higher = member)."""
    if attack == "loss":  # Yeom et al. 2018
        return -cross_entropy(probabilities, labels)
    if attack == "confidence":
        return np.asarray(probabilities.max(axis=1).astype(np.float64))
    if attack == "entropy":
        p = np.maximum(probabilities.astype(np.float64), _TINY)
        return np.asarray((p * np.log(p)).sum(axis=1))
    if attack == "label-only":  # the gap attack: correctly classified = member
        predicted = probabilities if probabilities.ndim == 1 else probabilities.argmax(axis=1)
        return np.asarray((predicted == labels).astype(np.float64))
    raise ConfigError(f"unknown threshold attack {attack!r}; valid: {THRESHOLD_ATTACKS}")


# -- shadow models ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ShadowSet:
    """Shadow models' outputs on the candidate pool and which records each one trained on."""

    probabilities: np.ndarray  # (num_shadows, pool, classes)
    included: np.ndarray  # (num_shadows, pool) bool


def train_federated(
    model: torch.nn.Module, x: np.ndarray, y: np.ndarray, config: RunConfig, seed: int
) -> None:
    """Train ``model`` in place as the target federation trained (the attacker knows how).

    The records are dealt to ``num-clients`` clients; each of ``num-server-rounds`` rounds
    samples ``fraction-train`` of them, each trains the global model with the local recipe,
    and the global model becomes their average weighted by records (FedAvg). Centralized
    training for ``rounds x epochs`` epochs, the usual stand-in, overfits far more than a
    record seen in a few rounds of averaged updates, which weakens LiRA and RMIA.
    """
    rng = np.random.default_rng(seed)
    shards = [s for s in np.array_split(rng.permutation(len(y)), config.num_clients) if len(s)]
    per_round = min(len(shards), max(1, int(len(shards) * config.fraction_train)))
    device = torch_device(config.device)
    model.to(device)
    start = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for server_round in range(config.num_server_rounds):
        total = {k: torch.zeros_like(v) for k, v in start.items()}
        weight = 0
        for client in rng.choice(len(shards), size=per_round, replace=False):
            model.load_state_dict(start)
            records = shards[client]
            train(
                model,
                x[records],
                y[records],
                config.local_epochs,
                config.batch_size,
                config.learning_rate,
                config.momentum,
                seed=seed * 1_000_003 + server_round * 1_009 + int(client),
                device=device,
            )
            for k, v in model.state_dict().items():
                total[k] += len(records) * v
            weight += len(records)
        start = {k: v / weight for k, v in total.items()}
    model.load_state_dict(start)


def train_shadows(
    config: RunConfig,
    pool_x: np.ndarray,
    pool_y: np.ndarray,
    train_size: int,
    num_classes: int,
    settings: MembershipSettings,
    progress: Callable[[int], None] | None = None,
) -> ShadowSet:
    """Train shadow models with the target's recipe, each on ``train_size`` random pool records.

    Each record is included in about ``train_size / len(pool)`` of the shadows, which gives
    LiRA both IN and OUT models for every record.
    """
    rng = np.random.default_rng(settings.seed)
    # The shadows normalize their input as the target model does.
    normalization = load_dataset(config.dataset).normalization
    outputs, included = [], []
    for index in range(settings.num_shadows):
        chosen = rng.choice(len(pool_y), size=train_size, replace=False)
        mask = np.zeros(len(pool_y), dtype=bool)
        mask[chosen] = True
        model = build_model(
            config.model,
            pool_x.shape[1:],
            num_classes,
            seed=settings.seed * 7919 + index,
            normalization=normalization,
        )
        seed = settings.seed * 104729 + index
        if settings.shadow_epochs:
            train(
                model,
                pool_x[chosen],
                pool_y[chosen],
                settings.shadow_epochs,
                config.batch_size,
                config.learning_rate,
                config.momentum,
                seed=seed,
                device=torch_device(config.device),
            )
        else:
            train_federated(model, pool_x[chosen], pool_y[chosen], config, seed)
        outputs.append(torch.softmax(model_logits(model, pool_x), 1).numpy())
        included.append(mask)
        if progress is not None:
            progress(index + 1)
    return ShadowSet(np.stack(outputs), np.stack(included))


def lira_scores(
    target_probabilities: np.ndarray,
    labels: np.ndarray,
    shadows: ShadowSet,
    online: bool,
    fixed_variance: bool = True,
) -> np.ndarray:
    """LiRA membership scores for each pool record (higher = member).

    Offline: ``log Pr[Z <= phi]`` for ``Z ~ N(mu_out, sigma_out^2)``; online: the Gaussian
    likelihood ratio ``log N(phi; mu_in, sigma_in^2) - log N(phi; mu_out, sigma_out^2)``.
    """
    observed = logit_confidence(target_probabilities, labels)
    shadow_phi = np.stack([logit_confidence(p, labels) for p in shadows.probabilities])
    inside = shadows.included
    mu_out, sd_out = _gaussian(shadow_phi, ~inside, fixed_variance)
    if not online:
        return np.asarray(norm.logcdf(observed, loc=mu_out, scale=sd_out))
    mu_in, sd_in = _gaussian(shadow_phi, inside, fixed_variance)
    online_score = norm.logpdf(observed, mu_in, sd_in) - norm.logpdf(observed, mu_out, sd_out)
    # A record that no shadow trained on (or all did) falls back to the offline test.
    fallback = norm.logcdf(observed, loc=mu_out, scale=sd_out)
    usable = inside.any(axis=0) & (~inside).any(axis=0)
    return np.asarray(np.where(usable, online_score, fallback))


def _gaussian(
    values: np.ndarray, mask: np.ndarray, fixed_variance: bool
) -> tuple[np.ndarray, np.ndarray]:
    counts = mask.sum(axis=0)
    sums = np.where(mask, values, 0.0).sum(axis=0)
    mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    overall = values[mask]
    mean = np.where(np.isnan(mean), overall.mean() if overall.size else 0.0, mean)
    if fixed_variance:
        residual = (values - mean)[mask]
        sd = np.full(values.shape[1], max(float(residual.std()) if residual.size else 1.0, 1e-3))
    else:
        sq = np.where(mask, (values - mean) ** 2, 0.0).sum(axis=0)
        sd = np.sqrt(sq / np.maximum(counts - 1, 1))
        sd = np.maximum(sd, 1e-3)
    return mean, sd


def tempered(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax at ``temperature`` of the logits behind probability vectors (``log p``)."""
    q = np.maximum(probabilities.astype(np.float64), _TINY) ** (1.0 / temperature)
    return np.asarray(q / q.sum(axis=-1, keepdims=True))


def rmia_scores(
    target_probabilities: np.ndarray,
    labels: np.ndarray,
    shadows: ShadowSet,
    population: np.ndarray,
    references: list[int],
    online: bool,
    offline_a: float = 0.3,
    gamma: float = 1.0,
    temperature: float = 1.0,
) -> np.ndarray:
    """RMIA membership scores for each pool record (higher = member).

    Zarifzadeh et al., "Low-Cost High-Power Membership Inference Attacks", ICML 2024.
    With ``p(x|m)`` a model's probability of ``x``'s true label (softmax at
    ``temperature``: confident models saturate at 1, where ratios lose their resolution),
    the likelihood ratio of a record is ``p(x|target) / p(x)``, where ``p(x)`` averages the
    ``references`` (shadow models): all of them (online), or those that did not train on
    ``x`` (offline), scaled as the paper's offline approximation
    ``((1 + a) p_OUT(x) + (1 - a)) / 2``. The score is the fraction of population records
    ``z`` (``population``: pool indices no model of the target trained on) that ``x``
    beats by more than ``gamma`` in ``LR(x) / LR(z)``. A record that no reference left out
    falls back to the mean of all of them.
    """
    index = np.arange(len(labels))
    target = tempered(target_probabilities, temperature)[index, labels]
    p_refs = tempered(shadows.probabilities[references], temperature)[:, index, labels]
    if online:
        p_x = p_refs.mean(axis=0)
    else:
        out = ~shadows.included[references]
        count = out.sum(axis=0)
        p_out = np.where(
            count > 0, (p_refs * out).sum(axis=0) / np.maximum(count, 1), p_refs.mean(axis=0)
        )
        p_x = 0.5 * ((1 + offline_a) * p_out + (1 - offline_a))
    ratio = np.maximum(target, _TINY) / np.maximum(p_x, _TINY)
    against = np.sort(ratio[population])
    # Fraction of z with LR(x) / LR(z) > gamma, i.e. LR(z) < LR(x) / gamma (x itself, where
    # it is in the population, never counts: its ratio to itself is 1 <= gamma).
    beaten = np.searchsorted(against, ratio / gamma, side="left")
    return np.asarray(beaten / max(len(against), 1), dtype=np.float64)


# The grid RMIA's temperature and offline ``a`` are chosen from, on the reference models.
RMIA_TEMPERATURES = (1.0, 2.0, 4.0, 8.0)
RMIA_OFFLINE_A = (0.0, 0.3, 0.6)


def tune_rmia(
    labels: np.ndarray, shadows: ShadowSet, references: int, online: bool, gamma: float
) -> tuple[float, float]:
    """``(temperature, a)`` that best tell each reference model's members from the others.

    As the paper tunes ``a``: each of the first ``references`` shadows plays the target in
    turn (its training records are known), the other references are its references, and the
    grid point with the best mean ROC AUC wins. Only attacker-side models are used.
    """
    from sklearn.metrics import roc_auc_score

    if references < 2:
        return 2.0, 0.3  # nothing to tune on: a middle of the grid
    best, chosen = -1.0, (1.0, 0.3)
    for temperature in RMIA_TEMPERATURES:
        for a in RMIA_OFFLINE_A if not online else (0.0,):
            aucs = []
            for pseudo in range(references):
                others = [r for r in range(references) if r != pseudo]
                members = shadows.included[pseudo]
                population = np.flatnonzero(~members)
                if members.all() or not members.any():
                    continue
                scores = rmia_scores(
                    shadows.probabilities[pseudo],
                    labels,
                    shadows,
                    population,
                    others,
                    online,
                    a,
                    gamma,
                    temperature,
                )
                aucs.append(roc_auc_score(members, scores))
            if aucs and float(np.mean(aucs)) > best:
                best, chosen = float(np.mean(aucs)), (temperature, a)
    return chosen


def shokri_scores(
    target_probabilities: np.ndarray,
    labels: np.ndarray,
    shadows: ShadowSet,
    seed: int = 0,
) -> np.ndarray:
    """Shokri et al. 2017: an attack classifier learns IN/OUT from shadow models' outputs.

    Features are label-agnostic (sorted confidences, the true label's probability and loss), so
    one attack model serves every class.
    """
    features, targets = [], []
    for probs, inside in zip(shadows.probabilities, shadows.included, strict=True):
        features.append(_shokri_features(probs, labels))
        targets.append(inside)
    classifier = GradientBoostingClassifier(random_state=seed, n_estimators=100, max_depth=3)
    classifier.fit(np.concatenate(features), np.concatenate(targets))
    return np.asarray(
        classifier.predict_proba(_shokri_features(target_probabilities, labels))[:, 1]
    )


def _shokri_features(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    ordered = -np.sort(-probabilities.astype(np.float64), axis=1)[:, :3]
    p_true = probabilities[np.arange(len(labels)), labels][:, None].astype(np.float64)
    loss = cross_entropy(probabilities, labels)[:, None]
    return np.hstack([ordered, p_true, loss])


# How many of the largest posteriors ML-Leaks' attack classifier reads (Salem et al. use 3).
ML_LEAKS_TOP_K = 3


def top_posteriors(probabilities: np.ndarray, k: int = ML_LEAKS_TOP_K) -> np.ndarray:
    """Each answer's ``k`` largest probabilities, in decreasing order (no label involved)."""
    ordered: np.ndarray = -np.sort(-probabilities.astype(np.float64), axis=1)
    return ordered[:, :k]


def ml_leaks_scores(
    target_probabilities: np.ndarray, shadows: ShadowSet, seed: int = 0
) -> np.ndarray:
    """Salem et al., "ML-Leaks" (NDSS 2019), adversary 1: label-blind membership inference.

    An attack classifier (a multilayer perceptron, as in the paper) learns IN/OUT from the
    shadow models' sorted top-k posteriors on the candidate pool, then scores the released
    model's answers. It never reads a record's label: the defense MemGuard (Jia et al.,
    CCS 2019) is built against exactly this kind of attack.
    """
    features = np.concatenate([top_posteriors(p) for p in shadows.probabilities])
    targets = np.concatenate(list(shadows.included))
    classifier = MLPClassifier(hidden_layer_sizes=(64,), max_iter=500, random_state=seed)
    classifier.fit(features, targets)
    return np.asarray(classifier.predict_proba(top_posteriors(target_probabilities))[:, 1])
