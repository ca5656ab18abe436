"""The auditing numbers of the docs: RMIA against LiRA, client-level membership, the DP audit.

Run: ``python -m fedpriv.bench.auditing --out DIR``. Writes ``DIR/auditing.json`` (with the
command, the commit and the date); ``docs/generate.py`` renders a copy of it,
``docs/results/auditing.json``, into ``docs/reference/auditing.md``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fedpriv.attacks.dp_audit import dp_audit
from fedpriv.attacks.runner import run_attacks
from fedpriv.attacks.settings import MembershipSettings, SuiteSettings
from fedpriv.compare.spec import DEFAULT_EXPERIMENT
from fedpriv.config import RunConfig
from fedpriv.defenses.server_noise import DISABLE_NOISE
from fedpriv.experiment import load_run_config
from fedpriv.provenance import command, commit, today
from fedpriv.registry import Aggregation
from fedpriv.rundir import write_json
from fedpriv.simulation import run_simulation

OVERFIT = DEFAULT_EXPERIMENT.parent / "overfit-mnist5k.toml"
# Few records per client, many local epochs; as many held-out clients as participants.
CLIENT_LEVEL: dict[str, Any] = {
    "num_clients": 10,
    "held_out_clients": 10,
    "max_train_samples": 20,
    "local_epochs": 20,
    "num_server_rounds": 2,
}
# Client-level DP under ckks at sigma = 1, with canary clients.
DP_AUDIT: dict[str, Any] = {
    "aggregation": "ckks",
    "defense": "dp",
    "dp_noise_multiplier": 1.0,
    "dp_clipping_norm": 1.0,
    "dp_canaries": 10,
    "num_clients": 5,
    "num_server_rounds": 3,
}


def _metrics(result: Any) -> dict[str, Any]:
    if result.metrics is None:
        return {"status": str(result.status), "reason": result.reason}
    return {"status": str(result.status), **asdict(result.metrics), "settings": result.settings}


def _fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    return path


def run_auditing(out: Path) -> dict[str, Any]:
    """Every measurement; the result as ``auditing.json`` holds it."""
    out.mkdir(parents=True, exist_ok=True)
    overfit = run_simulation(load_run_config(OVERFIT).replace(out_dir=str(_fresh(out / "overfit"))))
    two = SuiteSettings(membership=MembershipSettings(num_shadows=2, rmia_references=2))
    few = {
        r.attack: _metrics(r)
        for r in run_attacks(overfit, "outsider", ["lira-offline", "rmia-offline"], two)
    }
    client_level: dict[str, Any] = {"config": CLIENT_LEVEL}
    for aggregation in (Aggregation.PLAINTEXT, Aggregation.CKKS):
        run = run_simulation(
            RunConfig(aggregation=aggregation, **CLIENT_LEVEL).replace(
                out_dir=str(_fresh(out / f"clients-{aggregation}"))
            )
        )
        for threat in ("curious-server", "outsider"):
            (result,) = run_attacks(run, threat, ["client-membership"])
            client_level[f"{aggregation}/{threat}"] = _metrics(result)
    audits: dict[str, Any] = {"config": DP_AUDIT}
    for name, disabled in (("noise", False), ("noise-disabled", True)):
        if disabled:
            os.environ[DISABLE_NOISE] = "1"
        try:
            run = run_simulation(
                RunConfig(**DP_AUDIT).replace(out_dir=str(_fresh(out / f"audit-{name}")))
            )
            audits[name] = dp_audit(run).to_json()
        finally:
            os.environ.pop(DISABLE_NOISE, None)
    return {
        "command": command(),
        "commit": commit(),
        "generated": today(),
        "rmia_vs_lira": {"experiment": str(OVERFIT.name), "references": 2, "results": few},
        "client_level": client_level,
        "dp_audit": audits,
    }


def main() -> None:
    """Measure and write ``auditing.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/auditing"))
    args = parser.parse_args()
    data = run_auditing(args.out)
    data["command"] = shlex.join(["python", "-m", "fedpriv.bench.auditing", "--out", str(args.out)])
    write_json(args.out / "auditing.json", data)
    print(f"results: {(args.out / 'auditing.json').resolve()}")


if __name__ == "__main__":
    main()
