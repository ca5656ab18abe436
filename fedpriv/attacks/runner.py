"""`fedpriv attack`: run the attacks a threat allows on a run directory and record the results."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.neural_network import MLPClassifier

from fedpriv.attacks.gradient_inversion import InversionSettings, LocalRecipe, invert
from fedpriv.attacks.membership import (
    SHADOW_ATTACKS,
    THRESHOLD_ATTACKS,
    MembershipSettings,
    ShadowSet,
    lira_scores,
    shokri_scores,
    threshold_scores,
    train_shadows,
)
from fedpriv.attacks.metrics import (
    image_metrics,
    match_reconstructions,
    membership_metrics,
    roc_points,
)
from fedpriv.attacks.model_inversion import MIFaceSettings, mi_face
from fedpriv.attacks.views import (
    THREATS,
    ColludingClientView,
    NotApplicable,
    OutsiderView,
    ServerView,
    Truth,
    ground_truth,
)
from fedpriv.config import RunConfig
from fedpriv.data.datasets import load_dataset
from fedpriv.errors import ConfigError
from fedpriv.models import build_model
from fedpriv.report.figures import image_grid, roc_plot
from fedpriv.rundir import write_json

INVERSION_ATTACKS = ("ig", "dlg", "idlg")
ATTACKS_BY_THREAT: dict[str, tuple[str, ...]] = {
    "curious-server": (*INVERSION_ATTACKS, "mi-face"),
    "colluding-client": (*INVERSION_ATTACKS, "mi-face"),
    "outsider": (*THRESHOLD_ATTACKS, *SHADOW_ATTACKS, "mi-face"),
}

Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class SuiteSettings:
    """Settings of one `fedpriv attack` invocation (each part validates itself)."""

    inversion: InversionSettings = field(
        default_factory=lambda: InversionSettings(iterations=300, restarts=1)
    )
    membership: MembershipSettings = field(default_factory=MembershipSettings)
    mi_face: MIFaceSettings = field(default_factory=MIFaceSettings)
    rounds: tuple[int, ...] = (1,)
    max_clients: int = 2
    outsider_output: str = "probabilities"

    def __post_init__(self) -> None:
        if self.max_clients < 1 or not self.rounds or min(self.rounds) < 1:
            raise ConfigError("max_clients must be >= 1 and rounds a non-empty list of rounds >= 1")
        if self.outsider_output not in ("probabilities", "labels"):
            raise ConfigError("outsider output must be 'probabilities' or 'labels'")


def run_attacks(
    run_dir: str | Path,
    threat: str,
    attacks: list[str] | None = None,
    settings: SuiteSettings | None = None,
    key_dir: str | Path | None = None,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Run ``attacks`` (default: all the threat allows) and write ``attacks/<threat>/*.json``."""
    if threat not in THREATS:
        raise ConfigError(f"unknown threat {threat!r}; valid choices: {', '.join(THREATS)}")
    allowed = ATTACKS_BY_THREAT[threat]
    chosen = list(attacks or allowed)
    unknown = [a for a in chosen if a not in allowed]
    if unknown:
        raise ConfigError(
            f"attack(s) {', '.join(unknown)} do not apply to threat {threat}; valid: "
            f"{', '.join(allowed)}"
        )
    settings = settings or SuiteSettings()
    context = _AttackContext(Path(run_dir), threat, settings, key_dir, progress)
    results = [context.run(attack) for attack in chosen]
    context.write_roc()
    return results


class _AttackContext:
    """State shared by the attacks of one invocation: the view, ground truth and shadows."""

    def __init__(
        self,
        run_dir: Path,
        threat: str,
        settings: SuiteSettings,
        key_dir: str | Path | None,
        progress: Progress | None,
    ) -> None:
        self.run_dir = run_dir
        self.threat = threat
        self.settings = settings
        self.key_dir = key_dir
        self.progress = progress or (lambda _name, _fraction: None)
        self.out = run_dir / "attacks" / threat
        self.config = RunConfig.from_flower(json.loads((run_dir / "config.json").read_text()))
        self.truth: Truth = ground_truth(self.config)
        self._shadows: ShadowSet | None = None
        self._membership: dict[str, Any] | None = None
        self.roc: dict[str, tuple[list[float], list[float]]] = {}

    # -- bookkeeping --------------------------------------------------------------------------
    def run(self, attack: str) -> dict[str, Any]:
        start = time.perf_counter()
        self.progress(attack, 0.0)
        result: dict[str, Any] = {"attack": attack, "threat": self.threat}
        try:
            outcome = self._dispatch(attack)
            result.update(applicable=True, reason=None, **outcome)
        except NotApplicable as err:
            result.update(applicable=False, reason=err.reason, metrics=None, settings=None)
        result["seconds"] = time.perf_counter() - start
        self.out.mkdir(parents=True, exist_ok=True)
        write_json(self.out / f"{attack}.json", _jsonable(result))
        self.progress(attack, 1.0)
        return result

    def _dispatch(self, attack: str) -> dict[str, Any]:
        if attack in INVERSION_ATTACKS:
            return self._gradient_inversion(attack)
        if attack == "mi-face":
            return self._mi_face()
        return self._membership_attack(attack)

    def _view(self) -> ServerView:
        if self.threat == "colluding-client":
            return ColludingClientView(self.run_dir, self.key_dir)
        return ServerView(self.run_dir)

    # -- gradient inversion -------------------------------------------------------------------
    def _gradient_inversion(self, method: str) -> dict[str, Any]:
        view = self._view()
        view.check_plaintext_updates()
        inversion = InversionSettings(**{**asdict(self.settings.inversion), "method": method})
        dataset = load_dataset(self.config.dataset)
        per_client, grid_truth, grid_rec = [], [], []
        updates = [
            u
            for r in self.settings.rounds
            if r in view.rounds
            for u in sorted(view.updates(r), key=lambda u: (u.partition_id is None, u.node))[
                : self.settings.max_clients
            ]
        ]
        if not updates:
            raise NotApplicable(f"no update in rounds {list(self.settings.rounds)}")
        for index, update in enumerate(updates):
            recipe = LocalRecipe(
                self.config.learning_rate,
                self.config.momentum,
                self.config.local_epochs,
                self.config.batch_size,
                update.num_examples or inversion.max_images,
            )
            model = build_model(self.config.model, dataset.input_shape, dataset.num_classes)
            rec = invert(
                model,
                update.before,
                update.after,
                recipe,
                dataset.input_shape,
                dataset.num_classes,
                inversion,
            )
            candidates = self._candidate_records(update.partition_id)
            pairs = match_reconstructions(rec.images, self.truth.x[candidates])
            scores = [image_metrics(rec.images[i], self.truth.x[candidates[j]]) for i, j in pairs]
            labels_ok = [int(rec.labels[i] == self.truth.y[candidates[j]]) for i, j in pairs]
            per_client.append(
                {
                    "round": update.server_round,
                    "node": update.node,
                    "num_examples": update.num_examples,
                    "reconstructed": len(rec.images),
                    "matching_loss": rec.loss,
                    "mse": float(np.mean([s["mse"] for s in scores])),
                    "psnr": float(np.mean([s["psnr"] for s in scores])),
                    "ssim": float(np.mean([s["ssim"] for s in scores])),
                    "label_accuracy": float(np.mean(labels_ok)),
                }
            )
            for i, j in pairs[:4]:
                grid_rec.append(rec.images[i])
                grid_truth.append(self.truth.x[candidates[j]])
            self.progress(method, (index + 1) / len(updates))
        image_grid(
            {"truth": np.stack(grid_truth), method: np.stack(grid_rec)},
            self.out / f"{method}.png",
            f"{method} on the {self.threat} view",
        )
        # The matched pairs themselves, for reports that compose their own figures.
        np.savez_compressed(
            self.out / f"{method}-images.npz",
            truth=np.stack(grid_truth),
            reconstruction=np.stack(grid_rec),
        )
        metrics = {
            key: float(np.mean([c[key] for c in per_client]))
            for key in ("mse", "psnr", "ssim", "label_accuracy")
        }
        return {
            "metrics": metrics,
            "clients": per_client,
            "settings": {**inversion.to_dict(), "rounds": list(self.settings.rounds)},
            "figure": f"{method}.png",
        }

    def _candidate_records(self, partition_id: int | None) -> np.ndarray:
        """The records an update may come from: its client's, or every client's if unknown."""
        if partition_id is not None and partition_id in self.truth.train_indices:
            return self.truth.train_indices[partition_id]
        return np.flatnonzero(self.truth.member)

    # -- membership inference -----------------------------------------------------------------
    def _membership_data(self) -> dict[str, Any]:
        if self._membership is None:
            rng = np.random.default_rng(self.settings.membership.seed)
            members = np.flatnonzero(self.truth.member)
            others = np.flatnonzero(~self.truth.member)
            if len(others) == 0:
                raise NotApplicable("every record trained the model: no non-member to test")
            limit = self.settings.membership.max_targets
            members = rng.choice(members, size=min(limit, len(members)), replace=False)
            others = rng.choice(others, size=min(2 * limit, len(others)), replace=False)
            pool = np.concatenate([members, others])
            self._membership = {
                "pool": pool,
                "is_member": self.truth.member[pool],
                "train_size": int(self.truth.member.sum()),
            }
        return self._membership

    def _shadow_set(self, data: dict[str, Any]) -> ShadowSet:
        if self._shadows is None:
            pool = data["pool"]
            total = self.settings.membership.num_shadows
            self._shadows = train_shadows(
                self.config,
                self.truth.x[pool],
                self.truth.y[pool],
                min(data["train_size"], len(pool) // 2),
                load_dataset(self.config.dataset).num_classes,
                self.settings.membership,
                progress=lambda done: self.progress("shadow models", done / total),
            )
        return self._shadows

    def _membership_attack(self, attack: str) -> dict[str, Any]:
        view = OutsiderView(self.run_dir, self.settings.outsider_output)
        data = self._membership_data()
        x, y = self.truth.x[data["pool"]], self.truth.y[data["pool"]]
        answers = view.query(x)
        if view.output == "labels" and attack != "label-only":
            raise NotApplicable("label-only access: the attack needs confidence scores")
        if attack in THRESHOLD_ATTACKS:
            scores = threshold_scores(attack, answers, y)
            settings: dict[str, Any] = {"output": view.output}
        else:
            shadows = self._shadow_set(data)
            if attack == "shokri":
                scores = shokri_scores(answers, y, shadows, self.settings.membership.seed)
            else:
                scores = lira_scores(
                    answers,
                    y,
                    shadows,
                    online=attack == "lira-online",
                    fixed_variance=self.settings.membership.fixed_variance,
                )
            settings = {"output": view.output, **self.settings.membership.to_dict()}
        if view.defended:
            settings["defense"] = {
                "name": "memguard",
                "epsilon": self.config.memguard_epsilon,
                "mean_l1_distortion": float(np.mean(view.distortion)),
                "max_l1_distortion": float(np.max(view.distortion)),
            }
            if attack == "label-only":
                settings["defense"]["note"] = (
                    "MemGuard keeps every predicted label, so it cannot change what a "
                    "label-only attack sees"
                )
        metrics = membership_metrics(scores, data["is_member"])
        curve = roc_points(scores, data["is_member"])
        self.roc[attack] = (curve["fpr"], curve["tpr"])
        return {"metrics": metrics, "roc": curve, "settings": settings, "queries": view.queries}

    def write_roc(self) -> None:
        if self.roc:
            roc_plot(self.roc, self.out / "roc.png", f"membership inference ({self.threat})")

    # -- model inversion ----------------------------------------------------------------------
    def _mi_face(self) -> dict[str, Any]:
        dataset = load_dataset(self.config.dataset)
        mode = "black-box" if self.threat == "outsider" else "white-box"
        settings = MIFaceSettings(**{**asdict(self.settings.mi_face), "mode": mode})
        model, query = None, None
        if self.threat == "outsider":
            view = OutsiderView(self.run_dir, self.settings.outsider_output)
            if view.output == "labels":
                raise NotApplicable("label-only access: MI-Face needs confidence scores")
            query = view.query
        else:
            model = self._view().final_model()
        results = []
        for label in range(dataset.num_classes):
            results.append(mi_face(label, dataset.input_shape, settings, model=model, query=query))
            self.progress("mi-face", (label + 1) / dataset.num_classes)
        images = np.stack([r.image for r in results])
        evaluator = self._evaluation_classifier()
        predicted = evaluator.predict(images.reshape(len(images), -1))
        means = [dataset.x[dataset.y == r.label].mean(axis=0) for r in results]
        ssim = [image_metrics(r.image, m)["ssim"] for r, m in zip(results, means, strict=True)]
        image_grid(
            {"class mean": np.stack(means), "MI-Face": images},
            self.out / "mi-face.png",
            f"MI-Face ({mode}) on the {self.threat} view",
        )
        return {
            "metrics": {
                "eval_accuracy": float(np.mean(predicted == np.arange(len(results)))),
                "ssim_to_class_mean": float(np.mean(ssim)),
                "mean_cost": float(np.mean([r.cost for r in results])),
            },
            "labels": [
                {
                    "label": r.label,
                    "cost": r.cost,
                    "iterations": r.iterations,
                    "queries": r.queries,
                    "stopped_by": r.stopped_by,
                }
                for r in results
            ],
            "settings": settings.to_dict(),
            "figure": "mi-face.png",
        }

    def _evaluation_classifier(self) -> MLPClassifier:
        """A classifier trained separately, on records that trained no federated model."""
        held_out = ~self.truth.member
        if held_out.sum() < 10 * load_dataset(self.config.dataset).num_classes:
            held_out = np.ones_like(held_out)
        x = self.truth.x[held_out].reshape(int(held_out.sum()), -1)
        return MLPClassifier((128,), max_iter=500, random_state=0).fit(x, self.truth.y[held_out])


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None if np.isnan(value) else ("inf" if value > 0 else "-inf")
    return value
