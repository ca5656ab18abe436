"""Running a comparison: each arm's federation and attacks, reused when nothing changed.

One module: running the plan's federations, their twins and attacks, and collecting their
results share the reuse keys defined here.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fedpriv.attacks.context import Progress as AttackProgress
from fedpriv.attacks.dp_audit import dp_audit
from fedpriv.attacks.registry import ATTACKS, VIEWS, attacks_for
from fedpriv.attacks.results import Threat
from fedpriv.attacks.runner import read_results, run_attacks
from fedpriv.compare.plan import Federation, distinct_runs, plan, point_runs, point_value
from fedpriv.compare.spec import Arm, Comparison
from fedpriv.defenses.base import load_defense
from fedpriv.device import torch_device
from fedpriv.narrative import count
from fedpriv.provenance import code_digest, command, commit, today, versions
from fedpriv.registry import Defense as DefenseName
from fedpriv.report.figures import attack_figures
from fedpriv.report.headline import headline, relate, summarize, undefended
from fedpriv.report.narrative import protection_text
from fedpriv.report.render import write_report
from fedpriv.report.results import ArmResult, ComparisonResult, Headline, Provenance, SweepPoint
from fedpriv.report.rows import ROWS, ResultRow, run_rows, write_rows
from fedpriv.rundir import ATTACKS as ATTACKS_DIR
from fedpriv.rundir import (
    CONFIG,
    RELEASE_REFUSED,
    REUSE,
    RunDirectory,
    coalition_dir,
    undefended_dir,
    write_json,
)
from fedpriv.schemes.base import load_scheme
from fedpriv.simulation import run_simulation
from fedpriv.version import __version__

# Reports progress: (arm, what it is doing).
Progress = Callable[[str, str], None]
# The libraries whose versions change results.
RESULT_LIBRARIES = ("flwr", "torch", "tenseal", "numpy", "scikit-learn", "scikit-image", "opacus")


def run_key(arm: Arm) -> dict[str, Any]:
    """Everything that determines an arm's run: its configuration and the code."""
    return {
        "config": arm.config.replace(out_dir="", key_dir="").to_flower(),
        "fedpriv": __version__,
        "code": code_digest("fedpriv", "clients", "server", "strategies"),
        "versions": versions(*RESULT_LIBRARIES),
    }


def attack_key(
    comparison: Comparison, threat: str, attack: str, run: dict[str, Any]
) -> dict[str, Any]:
    """Everything that determines one attack's result: the run, its settings, the code."""
    suite = comparison.suite
    return {
        "run": run,
        "threat": threat,
        "attack": attack,
        "settings": {path: _plain(_lookup(suite, path)) for path in ATTACKS.load(attack).uses},
        "code": code_digest("fedpriv/attacks", "fedpriv/defenses"),
    }


def _complete(rundir: RunDirectory, arm: Arm, key: dict[str, Any]) -> bool:
    """Whether a previous run of this arm finished with the same key."""
    released = rundir.has_model() or (rundir.path / RELEASE_REFUSED).is_file()
    if rundir.reuse_key("run") != key or not rundir.has_history() or not released:
        return False
    history = rundir.read_history()
    return len(history) == arm.config.num_server_rounds and all(r.finished for r in history)


def refresh_attacks(
    comparison: Comparison,
    rundir: RunDirectory,
    threat: str,
    run: dict[str, Any],
    force: bool,
    say: Progress,
    progress: AttackProgress | None,
) -> None:
    """Run the attacks of ``threat`` whose stored result was made with other settings or code.

    Attacks whose key is unchanged keep their results; the threat's figures are redrawn.
    """
    wanted = {a: attack_key(comparison, threat, a, run) for a in attacks_for(threat)}
    stale = [a for a, k in wanted.items() if force or rundir.reuse_key(_scope(threat, a)) != k]
    if not stale:
        return
    say(rundir.path.name, f"attacks: {threat} ({', '.join(stale)})")
    for attack in stale:
        rundir.forget_reuse_key(_scope(threat, attack))
        for path in rundir.attack_dir(threat).glob(f"{attack}[.-]*"):
            path.unlink()
    results = run_attacks(rundir.path, threat, stale, comparison.suite, progress=progress)
    attack_figures(rundir.path, threat, list(read_results(rundir.path, threat).values()))
    for result in results:
        rundir.write_reuse_key(_scope(threat, result.attack), wanted[result.attack])


def run_comparison(
    comparison: Comparison,
    out: str | Path,
    force: bool = False,
    progress: Progress | None = None,
    attack_progress: AttackProgress | None = None,
) -> ComparisonResult:
    """Run (or reuse) every arm and its attacks, then write ``results.json`` and the report."""
    for arm in comparison.arms:
        torch_device(arm.config.device)  # refused before anything is written
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda _arm, _what: None)
    timings: dict[str, float] = {}
    for job in distinct_runs(plan(comparison)):
        start = time.perf_counter()
        _run_arm(comparison, job, out, force, say, attack_progress)
        if not job.point:
            timings[job.arm] = timings.get(job.arm, 0.0) + time.perf_counter() - start
    results = collect(comparison, out, timings)
    write_json(out / "results.json", results.to_json())
    write_rows(out / ROWS, comparison_rows(comparison, out))
    write_report(out, results)
    return results


def _run_arm(
    comparison: Comparison,
    job: Federation,
    out: Path,
    force: bool,
    say: Progress,
    attack_progress: AttackProgress | None,
) -> None:
    """One federation of the plan: its run, every honest threat's attacks and the DP audit.

    Where the job has ``twins``, also the malicious server's twin and the coalitions.
    """
    arm = job.run
    run_dir = out / "runs" / arm.name
    rundir = RunDirectory(run_dir)
    key = run_key(arm)
    if force or not _complete(rundir, arm, key):
        say(arm.name, "federation")
        if run_dir.exists():
            shutil.rmtree(run_dir)  # an interrupted or different run: start it again
        run_simulation(arm.config.replace(out_dir=str(run_dir), key_dir=""))
        rundir.write_reuse_key("run", key)
    for threat in VIEWS:
        if threat != Threat.MALICIOUS_SERVER:
            refresh_attacks(comparison, rundir, threat, key, force, say, attack_progress)
    if arm.config.dp_canaries >= 2 and (force or not rundir.audit_path.exists()):
        say(arm.name, "DP audit (canaries)")
        dp_audit(rundir.path)
    _measure_undefended(comparison, arm, rundir, key, force, say, attack_progress)
    if not job.twins:
        return
    twin = comparison.malicious_twin(arm)
    if twin is None:
        # Why the malicious server gets nothing here, from the honest run itself.
        refresh_attacks(
            comparison, rundir, Threat.MALICIOUS_SERVER, key, force, say, attack_progress
        )
    else:
        _run_malicious_twin(comparison, twin, rundir, force, say, attack_progress)
    _measure_coalitions(comparison, arm, rundir, key, force, say, attack_progress)


def _measure_undefended(
    comparison: Comparison,
    arm: Arm,
    rundir: RunDirectory,
    key: dict[str, Any],
    force: bool,
    say: Progress,
    attack_progress: AttackProgress | None,
) -> None:
    """The outsider's attacks on the same released model without a query-time defense.

    MemGuard changes answers, not the model: attacking the model with and without it, seed
    by seed, measures what it does free of training's run-to-run spread. The twin folder
    links the run's files and holds its own configuration (``defense = none``).
    """
    if not load_defense(arm.config).guards_queries:
        return
    folder = RunDirectory(undefended_dir(rundir.path))
    _link_run(rundir, folder.path, own=(ATTACKS_DIR, REUSE, CONFIG))
    undefended = arm.config.replace(defense=DefenseName.NONE, out_dir=str(folder.path))
    if not (folder.path / CONFIG).exists() or folder.read_config() != undefended:
        folder.write_config(undefended)
    refresh_attacks(
        comparison, folder, Threat.OUTSIDER, key, force,
        lambda _name, what: say(arm.name, f"{what} without {arm.config.defense}"),
        attack_progress,
    )  # fmt: skip


def _link_run(rundir: RunDirectory, folder: Path, own: tuple[str, ...]) -> None:
    """``folder`` reading ``rundir``'s files through links, except the entries it keeps ``own``.

    A twin view of one run (a coalition, the model without its defense) writes its own
    attack results beside the run's without copying the run.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for entry in rundir.path.iterdir():
        link = folder / entry.name
        if entry.name not in own and not (link.is_symlink() or link.exists()):
            link.symlink_to(entry.resolve())


def _measure_coalitions(
    comparison: Comparison,
    arm: Arm,
    rundir: RunDirectory,
    key: dict[str, Any],
    force: bool,
    say: Progress,
    attack_progress: AttackProgress | None,
) -> None:
    """Invert one update as coalitions of ``t - 1`` and ``t`` clients, where ``t >= 2``.

    Each coalition reads the same run through its own folder (links to the run's files, its
    own ``attacks/``), so its results sit beside the run's one-colluder results.
    """
    threshold = load_scheme(arm.config).decrypting_coalition()
    if threshold < 2:
        return
    for colluders in (threshold - 1, threshold):
        folder = RunDirectory(coalition_dir(rundir.path, colluders))
        if not force and folder.reuse_key("coalition") == key:
            continue
        say(arm.name, f"attacks: a coalition of {count(colluders, 'client')} (ig)")
        shutil.rmtree(folder.path, ignore_errors=True)
        _link_run(rundir, folder.path, own=(ATTACKS_DIR, REUSE))
        suite = dataclasses.replace(comparison.suite, colluders=colluders, max_clients=1)
        run_attacks(folder.path, Threat.COLLUDING_CLIENT, ["ig"], suite, progress=attack_progress)
        folder.write_reuse_key("coalition", key)


def _run_malicious_twin(
    comparison: Comparison,
    twin: Arm,
    rundir: RunDirectory,
    force: bool,
    say: Progress,
    attack_progress: AttackProgress | None,
) -> None:
    """Run the arm's malicious-server federation; its attack results join the arm's."""
    twin_dir = RunDirectory(rundir.path.parent / twin.name)
    key = run_key(twin)
    if force or not _complete(twin_dir, twin, key):
        say(twin.name, "federation")
        if twin_dir.path.exists():
            shutil.rmtree(twin_dir.path)
        run_simulation(twin.config.replace(out_dir=str(twin_dir.path), key_dir=""))
        twin_dir.write_reuse_key("run", key)
    threat = Threat.MALICIOUS_SERVER
    refresh_attacks(comparison, twin_dir, threat, key, force, say, attack_progress)
    # The arm's results hold what the malicious server learned in its twin federation.
    target = rundir.attack_dir(threat)
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(twin_dir.attack_dir(threat), target)


def collect(comparison: Comparison, out: Path, timings: dict[str, float]) -> ComparisonResult:
    """Gather every arm's history and attack results into the comparison's results.

    An arm's headline is the mean over its seeds' federations (with the half-widths of
    their 95% intervals where several ran); so is each sweep point's.
    """
    jobs = plan(comparison)
    arms = []
    for spec in comparison.arms:
        runs = [job.run for job in jobs if job.arm == spec.name and not job.point]
        result, summary, spread = _summary(runs, out)
        result.headline, result.spread = summary, spread
        result.wall_seconds = timings.get(spec.name)
        result.seeds = [run.config.seed for run in runs]
        arms.append(result)
    baseline = next((a for a in arms if load_scheme(a.config).unprotected()), arms[0])
    for arm in arms:
        relate(arm.headline, baseline.headline)
    for arm in arms:
        arm.protection = protection_text(arm, baseline)
    sweeps = []
    points = dict.fromkeys((job.arm, job.point) for job in jobs if job.point)
    for arm_name, point in points:
        runs = point_runs(jobs, arm_name, point)
        first, summary, spread = _summary(runs, out)
        relate(summary, baseline.headline)
        assert comparison.sweep is not None
        value = point_value(comparison, point)
        seeds = [run.config.seed for run in runs]
        sweeps.append(
            SweepPoint(arm_name, comparison.sweep.key, value, first.name, summary, spread, seeds)
        )
    return ComparisonResult(
        experiment=comparison.source,
        baseline=baseline.name,
        settings=_jsonable(comparison.suite),
        arms=arms,
        provenance=Provenance(command(), commit(), today()),
        quick=comparison.quick,
        sweeps=sweeps,
    )


def _summary(runs: list[Arm], out: Path) -> tuple[ArmResult, Headline, dict[str, float]]:
    """The first run's results, and the headline's means and 95% half-widths over ``runs``."""
    results = [ArmResult.read(run.name, out / "runs" / run.name) for run in runs]
    headlines = [headline(result) for result in results]
    if len(headlines) == 1:
        return results[0], headlines[0], {}
    summary, spread = summarize(headlines)
    return results[0], summary, spread


def comparison_rows(comparison: Comparison, out: Path) -> Iterator[ResultRow]:
    """Every federation's numbers in long format, job by job of the plan.

    A sweep point at the arm's own value reads the arm's federations again, labelled with
    the point, so that a frontier is complete on its own rows.
    """
    for job in plan(comparison):
        result = ArmResult.read(job.run.name, out / "runs" / job.run.name)
        yield from run_rows(result, job.arm, job.point)
        bare = undefended(result)
        if bare.attacks and not job.point:  # the same model without its query-time defense
            yield from run_rows(bare, f"{job.arm} (undefended)", runs=False)


def _scope(threat: str, attack: str) -> str:
    return f"attacks/{threat}/{attack}"


def _lookup(settings: Any, path: str) -> Any:
    """The value at a dotted path into the suite's settings."""
    for name in path.split("."):
        settings = getattr(settings, name)
    return settings


def _plain(value: Any) -> Any:
    """A settings value as JSON (dataclasses as dictionaries, tuples as lists)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return list(value) if isinstance(value, tuple) else value


def _jsonable(suite: Any) -> dict[str, Any]:
    """The attack settings as recorded in results."""
    return {
        "inversion": suite.inversion.to_dict(),
        "membership": suite.membership.to_dict(),
        "mi_face": suite.mi_face.to_dict(),
        "max_clients": suite.max_clients,
        "rounds": list(suite.rounds),
    }
