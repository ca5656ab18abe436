"""Model inversion: MI-Face, Algorithm 1 of Fredrikson, Jha and Ristenpart (CCS 2015).

For a target label the attack descends the cost ``c(x) = 1 - f_label(x)`` from a blank image,
applies PROCESS (box constraint, denoising, sharpening) after every step, stops when the cost
has not improved on the worst of the last ``patience`` costs or falls under the threshold, and
returns the best iterate seen. White-box attackers use the model's gradient; black-box
attackers estimate it from queries (central finite differences) within a query budget.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from skimage.filters import unsharp_mask
from skimage.restoration import denoise_tv_chambolle

from fedpriv.attacks.settings import MIFaceSettings
from fedpriv.errors import ConfigError
from fedpriv.training import model_device, model_logits

# A black-box attacker's access: records in, the model's probabilities out.
Query = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Inversion:
    """The best image found for one label, its cost, and what it took."""

    label: int
    image: np.ndarray
    cost: float
    iterations: int
    queries: int
    stopped_by: str


def process(image: np.ndarray, settings: MIFaceSettings) -> np.ndarray:
    """PROCESS: keep pixels in [0, 1], then denoise and sharpen."""
    out = np.clip(image, 0.0, 1.0)
    if settings.denoise_weight > 0:
        out = denoise_tv_chambolle(out, weight=settings.denoise_weight, channel_axis=0)
    if settings.sharpen_amount > 0:
        out = unsharp_mask(out, radius=1.0, amount=settings.sharpen_amount, channel_axis=0)
    return np.asarray(np.clip(out, 0.0, 1.0).astype(np.float32))


def mi_face(
    label: int,
    input_shape: tuple[int, ...],
    settings: MIFaceSettings,
    model: torch.nn.Module | None = None,
    query: Query | None = None,
) -> Inversion:
    """Run MI-Face for one label with a white-box ``model`` or a black-box ``query``."""
    if settings.mode == "white-box":
        if model is None:
            raise ConfigError("white-box MI-Face needs the model")
        white_box: torch.nn.Module = model
    if settings.mode == "black-box" and query is None:
        raise ConfigError("black-box MI-Face needs a query function")
    queries = 0

    def cost(images: np.ndarray) -> np.ndarray:
        nonlocal queries
        queries += len(images)
        if query is not None and settings.mode == "black-box":
            return np.asarray(1.0 - query(images)[:, label].astype(np.float64))
        with torch.no_grad():
            probs = torch.softmax(model_logits(white_box, images), 1)
        return np.asarray(1.0 - probs[:, label].numpy().astype(np.float64))

    def gradient(image: np.ndarray) -> np.ndarray:
        nonlocal queries
        if settings.mode == "white-box":
            x = torch.from_numpy(image[None]).to(model_device(white_box)).requires_grad_(True)
            c = 1.0 - torch.softmax(white_box(x), 1)[0, label]
            c.backward()
            assert x.grad is not None
            return np.asarray(x.grad[0].cpu().numpy())
        flat = image.reshape(-1)
        eye = np.eye(flat.size, dtype=np.float32) * settings.fd_epsilon
        probes = np.concatenate([flat + eye, flat - eye]).reshape(-1, *image.shape)
        values = cost(probes)
        slope = (values[: flat.size] - values[flat.size :]) / (2 * settings.fd_epsilon)
        return np.asarray(slope.reshape(image.shape), dtype=np.float32)

    x = np.zeros(input_shape, dtype=np.float32)
    history = [float(cost(x[None])[0])]
    best, best_cost, stopped_by, iteration = x, history[0], "iterations", 0
    per_iteration = 2 * int(np.prod(input_shape)) + 1
    for step in range(1, settings.iterations + 1):
        iteration = step
        if settings.mode == "black-box" and queries + per_iteration > settings.query_budget:
            stopped_by = "query budget"
            break
        x = process(x - settings.step_size * gradient(x), settings)
        current = float(cost(x[None])[0])
        if current < best_cost:
            best, best_cost = x, current
        window = history[-settings.patience :]
        history.append(current)
        if len(window) >= settings.patience and current >= max(window):
            stopped_by = "patience"
            break
        if current <= settings.cost_threshold:
            stopped_by = "cost threshold"
            break
    return Inversion(label, best, best_cost, iteration, queries, stopped_by)
