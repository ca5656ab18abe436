"""Gradient inversion of client updates: Inverting Gradients, DLG and iDLG.

An observed update is ``before - after`` of one client's local training. The attacker, who
knows the recipe the server configured (learning rate, momentum, epochs, batch size),
simulates that training on dummy records and optimizes the records until the simulated update
matches the observed one. With one local step this is exactly gradient matching (Zhu et al.
2019, DLG; Zhao et al. 2020, iDLG); with several it is the multi-step attack of Geiping et al.
2020 (Inverting Gradients).

One module: the three attacks share the simulated local training and the matching of
reconstructions to true records.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from fedpriv.attacks.settings import InversionSettings
from fedpriv.errors import ConfigError
from fedpriv.parameters import vector_to_state

# Named tensors of a model (parameters, or their changes).
Params = dict[str, torch.Tensor]


@dataclass(frozen=True)
class LocalRecipe:
    """How a client trained locally: what the attacker simulates."""

    learning_rate: float
    momentum: float
    epochs: int
    batch_size: int
    num_examples: int

    @property
    def steps_per_epoch(self) -> int:
        """Mini-batch steps in one local epoch."""
        return math.ceil(self.num_examples / self.batch_size)

    def simulated(self, count: int, max_steps: int) -> LocalRecipe:
        """The recipe the attacker simulates on ``count`` dummies, at most ``max_steps`` steps."""
        total = self.epochs * self.steps_per_epoch
        if total <= max_steps:
            return LocalRecipe(
                self.learning_rate, self.momentum, self.epochs, self.batch_size, count
            )
        length = self.learning_rate * total / (1.0 - self.momentum)
        return LocalRecipe(length / max_steps, 0.0, max_steps, max(count, 1), count)


@dataclass(frozen=True)
class Reconstruction:
    """Reconstructed records and labels, the final matching loss, and the starts it took.

    ``loss`` is infinite when every start diverged: the images then mean nothing.
    """

    images: np.ndarray
    labels: np.ndarray
    loss: float
    attempts: int = 1

    @property
    def diverged(self) -> bool:
        """Whether no start converged to a finite matching loss."""
        return not math.isfinite(self.loss)


def _param_dict(model: nn.Module, vector: np.ndarray) -> dict[str, torch.Tensor]:
    template = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    return {k: torch.from_numpy(v.copy()) for k, v in vector_to_state(vector, template).items()}


def _last_bias(params: dict[str, torch.Tensor], num_classes: int) -> str:
    names = [k for k, v in params.items() if k.endswith("bias") and v.numel() == num_classes]
    if not names:
        raise ConfigError("the model has no output-layer bias to read labels from")
    return names[-1]


def _output_signal(update: dict[str, torch.Tensor], num_classes: int) -> np.ndarray:
    """Per class, minus the output layer's update: positive at the labels present.

    The output bias where the update holds it; else the output weight's row sums (its
    inputs are post-ReLU, so each row's sum has the sign of the bias gradient).
    """
    try:
        return np.asarray(-update[_last_bias(update, num_classes)].numpy())
    except ConfigError:
        weights = [k for k, v in update.items() if v.ndim == 2 and v.shape[0] == num_classes]
        if not weights:
            raise
        return np.asarray(-update[weights[-1]].sum(dim=1).numpy())


def recover_labels(update: dict[str, torch.Tensor], num_classes: int, count: int) -> np.ndarray:
    """iDLG: labels from the sign of the output-bias update.

    With cross-entropy, each record's bias gradient is ``softmax - onehot``: negative only at
    its label. ``update`` is ``before - after``, i.e. the learning rate times the (summed)
    gradients, so present labels have negative entries. For several records the labels are
    spread over those entries by magnitude.
    """
    bias = _output_signal(update, num_classes)
    order = np.argsort(-bias)
    present = [c for c in order if bias[c] > 0] or [int(order[0])]
    if count <= len(present):
        return np.array(present[:count], dtype=np.int64)
    weights = np.array([bias[c] for c in present])
    if not weights.sum() > 0:  # no label signal at all (an unchanged model): spread evenly
        weights = np.ones(len(present))
    shares = np.maximum(1, np.round(weights / weights.sum() * count)).astype(int)
    labels = np.repeat(present, shares)[:count]
    if len(labels) < count:
        labels = np.concatenate([labels, np.full(count - len(labels), present[0])])
    return labels.astype(np.int64)


def simulate_update(
    model: nn.Module,
    start: dict[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    recipe: LocalRecipe,
    buffers: dict[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Differentiable ``before - after`` of local SGD on ``(x, y)`` (soft or hard labels).

    ``start`` holds the trainable parameters; ``buffers`` the rest of the state (BatchNorm's
    running statistics), which the steps use as the client's did (updated, not trained).
    """
    state = {k: v.clone() for k, v in (buffers or {}).items()}
    params = {k: v.clone().requires_grad_(True) for k, v in start.items()}
    velocity = {k: torch.zeros_like(v) for k, v in start.items()}
    n = len(x)
    for _ in range(recipe.epochs):
        for step in range(recipe.steps_per_epoch):
            # Dummies stand in for the client's records, cycled in a fixed order.
            idx = [(step * recipe.batch_size + i) % n for i in range(min(recipe.batch_size, n))]
            logits = functional_call(model, {**params, **state}, (x[idx],))
            if y.dtype == torch.int64:
                loss = nn.functional.cross_entropy(logits, y[idx])
            else:
                loss = torch.sum(-torch.softmax(y[idx], 1) * torch.log_softmax(logits, 1), 1).mean()
            grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
            new_params = {}
            for (name, p), g in zip(params.items(), grads, strict=True):
                velocity[name] = recipe.momentum * velocity[name] + g
                new_params[name] = p - recipe.learning_rate * velocity[name]
            params = new_params
    return {k: start[k] - params[k] for k in start}


def _total(terms: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(terms).sum()


# Both compare a simulated update with the observed one over the observed one's names.
def _l2(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> torch.Tensor:
    return _total([((a[k] - b[k]) ** 2).sum() for k in b])


def _cosine(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> torch.Tensor:
    dot = _total([(a[k] * b[k]).sum() for k in b])
    norm_a = torch.sqrt(_total([(a[k] ** 2).sum() for k in b]))
    norm_b = torch.sqrt(_total([(b[k] ** 2).sum() for k in b]))
    return 1 - dot / (norm_a * norm_b + 1e-12)


def _total_variation(x: torch.Tensor) -> torch.Tensor:
    dx = torch.mean(torch.abs(x[:, :, :, :-1] - x[:, :, :, 1:]))
    dy = torch.mean(torch.abs(x[:, :, :-1, :] - x[:, :, 1:, :]))
    return dx + dy


def _split_state(model: nn.Module, vector: np.ndarray) -> tuple[Params, Params]:
    """A flat state as (trainable parameters, buffers).

    Buffers (running statistics) are not trained: the simulated steps carry them, the
    matching skips them.
    """
    trainable = {name for name, _ in model.named_parameters()}
    state = _param_dict(model, vector)
    start = {k: v for k, v in state.items() if k in trainable}
    return start, {k: v for k, v in state.items() if k not in trainable}


# L-BFGS evaluates the matching loss at most max_iter * 5 / 4 times per step (PyTorch's
# default max_eval) and takes one step per 20 of the budget's iterations.
LBFGS_MAX_ITER = 20
LBFGS_MAX_EVAL = LBFGS_MAX_ITER * 5 // 4


def matching_evaluations(settings: InversionSettings) -> tuple[int, bool]:
    """Matching-loss evaluations of one start, and whether that is an upper bound.

    Inverting Gradients takes exactly ``iterations`` Adam steps; DLG and iDLG take
    ``iterations // 20`` L-BFGS steps of at most :data:`LBFGS_MAX_EVAL` evaluations each and
    stop early once the loss stops changing.
    """
    if settings.method == "ig":
        return settings.iterations, False
    return max(1, settings.iterations // LBFGS_MAX_ITER) * LBFGS_MAX_EVAL, True


def matching_seconds(
    model: nn.Module,
    before: np.ndarray,
    recipe: LocalRecipe,
    input_shape: tuple[int, ...],
    num_classes: int,
    settings: InversionSettings,
    device: str | torch.device = "cpu",
) -> float:
    """Seconds of one evaluation of the matching loss and its gradient, as :func:`invert` runs it.

    Timed on the update's own model, record count and simulated recipe (a few calls after a
    warm-up): the unit :func:`invert`'s cost is made of.
    """
    from fedpriv.attacks.estimate import seconds_per_call

    start, buffers = _split_state(model, before)
    count = min(recipe.num_examples, settings.max_images)
    simulated = recipe.simulated(count, settings.max_steps)
    model.to(device).train()
    start = {k: v.to(device) for k, v in start.items()}
    buffers = {k: v.to(device) for k, v in buffers.items()}
    target = {k: torch.ones_like(v) for k, v in start.items()}
    generator = torch.Generator().manual_seed(settings.seed)
    x = torch.rand((count, *input_shape), generator=generator).to(device).requires_grad_(True)
    labels = torch.arange(count, device=device) % num_classes
    # DLG optimizes soft labels: the simulated steps then take the soft cross-entropy.
    y = torch.zeros((count, num_classes), device=device) if settings.method == "dlg" else labels

    def evaluate() -> None:
        update = simulate_update(model, start, x, y, simulated, buffers)
        if settings.method == "ig":
            loss = _cosine(update, target) + settings.tv_weight * _total_variation(x)
        else:
            loss = _l2(update, target)
        loss.backward()
        x.grad = None

    return seconds_per_call(evaluate)


def invert(
    model: nn.Module,
    before: np.ndarray,
    after: np.ndarray,
    recipe: LocalRecipe,
    input_shape: tuple[int, ...],
    num_classes: int,
    settings: InversionSettings,
    ignored: tuple[str, ...] = (),
    device: str | torch.device = "cpu",
) -> Reconstruction:
    """Reconstruct the records behind one observed update.

    ``ignored`` names parameters whose observed update is not the client's alone (a
    malicious server's isolated update mixes in others' output bias): they are left out of
    the matching.

    ``settings.restarts`` starts must converge; a start whose matching loss diverges (NaN or
    inf) does not count and is replaced by a fresh one, up to as many again. The best start
    is kept; if none converged the result says so (:attr:`Reconstruction.diverged`).

    The optimization runs on ``device``; starts are drawn on the CPU, so the same seed
    starts from the same images on every device.
    """
    start, buffers = _split_state(model, before)
    target = {
        k: start[k] - v
        for k, v in _param_dict(model, after).items()
        if k in start and k not in ignored
    }
    count = min(recipe.num_examples, settings.max_images)
    labels = torch.from_numpy(recover_labels(target, num_classes, count)).to(device)
    model.to(device).train()  # as the client trained: BatchNorm normalizes by the batch
    start = {k: v.to(device) for k, v in start.items()}
    buffers = {k: v.to(device) for k, v in buffers.items()}
    target = {k: v.to(device) for k, v in target.items()}
    recipe = recipe.simulated(count, settings.max_steps)
    generator = torch.Generator().manual_seed(settings.seed)
    best: Reconstruction | None = None
    converged = attempts = 0
    while converged < settings.restarts and attempts < 2 * settings.restarts:
        attempts += 1
        x = torch.rand((count, *input_shape), generator=generator).to(device).requires_grad_(True)
        if settings.method == "ig":
            loss = _run_ig(model, start, target, x, labels, recipe, settings, buffers)
            y_out = labels
        else:
            soft = None
            if settings.method == "dlg":
                soft = (
                    torch.randn((count, num_classes), generator=generator)
                    .to(device)
                    .requires_grad_(True)
                )
            loss = _run_lbfgs(model, start, target, x, labels, soft, recipe, settings, buffers)
            y_out = labels if soft is None else soft.detach().argmax(1)
        images = torch.nan_to_num(x.detach(), nan=0.0).clamp(0, 1).cpu().numpy()
        loss = loss if math.isfinite(loss) else float("inf")
        converged += math.isfinite(loss)
        candidate = Reconstruction(images, y_out.cpu().numpy().astype(np.int64), loss)
        if best is None or candidate.loss < best.loss:
            best = candidate
    assert best is not None
    return dataclasses.replace(best, attempts=attempts)


def _run_ig(
    model: nn.Module,
    start: Params,
    target: Params,
    x: torch.Tensor,
    labels: torch.Tensor,
    recipe: LocalRecipe,
    settings: InversionSettings,
    buffers: Params,
) -> float:
    optimizer = torch.optim.Adam([x], lr=settings.learning_rate)
    milestones = [int(settings.iterations * f) for f in (3 / 8, 5 / 8, 7 / 8)]
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.1)
    loss = torch.tensor(0.0)
    for _ in range(settings.iterations):
        optimizer.zero_grad()
        loss = _cosine(simulate_update(model, start, x, labels, recipe, buffers), target)
        objective = loss + settings.tv_weight * _total_variation(x)
        objective.backward()
        assert x.grad is not None
        x.grad.sign_()  # signed gradients, as in Geiping et al.
        optimizer.step()
        scheduler.step()
        with torch.no_grad():
            x.clamp_(0, 1)
    return float(loss.detach())


def _run_lbfgs(
    model: nn.Module,
    start: Params,
    target: Params,
    x: torch.Tensor,
    labels: torch.Tensor,
    soft: torch.Tensor | None,
    recipe: LocalRecipe,
    settings: InversionSettings,
    buffers: Params,
) -> float:
    variables = [x] if soft is None else [x, soft]
    optimizer = torch.optim.LBFGS(
        variables,
        lr=1.0,
        max_iter=LBFGS_MAX_ITER,
        max_eval=LBFGS_MAX_EVAL,
        history_size=100,
        line_search_fn="strong_wolfe",
    )
    y = labels if soft is None else soft
    state = {"loss": float("inf")}

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = _l2(simulate_update(model, start, x, y, recipe, buffers), target)
        loss.backward()
        state["loss"] = float(loss.detach())
        return loss

    for _ in range(max(1, settings.iterations // LBFGS_MAX_ITER)):
        optimizer.step(closure)
        with torch.no_grad():
            x.clamp_(0, 1)
        if not math.isfinite(state["loss"]) or state["loss"] < 1e-14:
            break
    return state["loss"]
