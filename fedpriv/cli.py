"""The `fedpriv` command: run federations, provision keys, release encrypted runs."""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fedpriv.errors import FedprivError

console = Console(stderr=True)

# CLI flag -> run-config key, for `fedpriv run`.
RUN_FLAGS: dict[str, tuple[str, type]] = {
    "aggregation": ("aggregation", str),
    "dataset": ("dataset", str),
    "model": ("model", str),
    "clients": ("num-clients", int),
    "rounds": ("num-server-rounds", int),
    "seed": ("seed", int),
    "partitioner": ("partitioner", str),
    "alpha": ("dirichlet-alpha", float),
    "local_epochs": ("local-epochs", int),
    "batch_size": ("batch-size", int),
    "lr": ("learning-rate", float),
    "momentum": ("momentum", float),
    "fraction_train": ("fraction-train", float),
    "fraction_evaluate": ("fraction-evaluate", float),
    "ckks_preset": ("ckks-preset", str),
    "max_train_samples": ("max-train-samples", int),
    "defense": ("defense", str),
    "dp_noise_multiplier": ("dp-noise-multiplier", float),
    "dp_clipping_norm": ("dp-clipping-norm", float),
    "dp_delta": ("dp-delta", float),
    "memguard_epsilon": ("memguard-epsilon", float),
}


def add_federation_flags(parser: argparse.ArgumentParser) -> None:
    """The flags that describe a federation (``RUN_FLAGS``), shared by `run` and `deploy local`."""
    parser.add_argument("--config", type=Path, help="experiment TOML file ([run] table)")
    parser.add_argument("--aggregation", help="plaintext | ckks")
    parser.add_argument("--dataset", help="digits | mnist5k | synthetic | hf:<name-or-path>")
    parser.add_argument("--model", help="mlp | cnn | convnet")
    parser.add_argument("--clients", type=int, help="number of clients (virtual SuperNodes)")
    parser.add_argument("--rounds", type=int, help="number of server rounds")
    parser.add_argument("--seed", type=int, help="seed of data split, model and training")
    parser.add_argument("--partitioner", help="iid | dirichlet | shards")
    parser.add_argument("--alpha", type=float, help="Dirichlet concentration")
    parser.add_argument("--local-epochs", type=int, help="local epochs per round")
    parser.add_argument("--batch-size", type=int, help="local mini-batch size")
    parser.add_argument("--lr", type=float, help="local SGD learning rate")
    parser.add_argument("--momentum", type=float, help="local SGD momentum")
    parser.add_argument("--fraction-train", type=float, help="fraction trained per round")
    parser.add_argument("--fraction-evaluate", type=float, help="fraction evaluated per round")
    parser.add_argument("--ckks-preset", help="CKKS preset (see `fedpriv keys presets`)")
    parser.add_argument(
        "--max-train-samples", type=int, help="cap on each client's training records (0: none)"
    )
    parser.add_argument("--defense", help="none | dp (ckks only) | dp-sgd | memguard")
    parser.add_argument("--dp-noise-multiplier", type=float, help="DP: noise sigma in units of C")
    parser.add_argument("--dp-clipping-norm", type=float, help="DP: clipping norm C of an update")
    parser.add_argument("--dp-delta", type=float, help="DP: delta of the reported epsilon")
    parser.add_argument("--memguard-epsilon", type=float, help="MemGuard: L1 distortion budget")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the `fedpriv` command."""
    parser = argparse.ArgumentParser(
        prog="fedpriv",
        description="Federated learning on Flower with CKKS-encrypted aggregation.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run one federation on Flower's Simulation Engine")
    add_federation_flags(run)
    run.add_argument("--out", type=Path, help="run directory (default runs/<aggregation>-<time>)")
    run.add_argument(
        "--resume",
        type=Path,
        metavar="DIR",
        help="continue the run in DIR after its last finished round (its config.json)",
    )
    run.add_argument("--verbose", action="store_true", help="show Flower's logs")
    run.set_defaults(handler=cmd_run)

    keys = commands.add_parser("keys", help="CKKS key provisioning for deployments")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    new = key_commands.add_parser("new", help="write a client (secret) and a server context")
    new.add_argument("--out", type=Path, required=True, help="key directory to create")
    new.add_argument("--preset", help="CKKS preset name (default: the default preset)")
    new.add_argument(
        "--server-out",
        type=Path,
        help="write the server's share (parameters only) here instead of into --out",
    )
    new.add_argument("--exist-ok", action="store_true", help="keep an existing key set, exit 0")
    new.set_defaults(handler=cmd_keys_new)
    presets = key_commands.add_parser("presets", help="list the CKKS presets")
    presets.set_defaults(handler=cmd_keys_presets)

    deploy = commands.add_parser("deploy", help="Flower Deployment Engine: loopback, compose, TLS")
    deploy_commands = deploy.add_subparsers(dest="deploy_command", required=True)
    local = deploy_commands.add_parser(
        "local", help="the compose topology as processes on loopback: start, run, stop"
    )
    add_federation_flags(local)
    local.add_argument("--out", type=Path, required=True, help="folder for run, logs, keys")
    local.add_argument("--insecure", action="store_true", help="no TLS (default: TLS everywhere)")
    local.add_argument("--node-auth", action="store_true", help="SuperNode authentication")
    local.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the run")
    local.set_defaults(handler=cmd_deploy_local)
    certs = deploy_commands.add_parser("certs", help="write a CA and a SuperLink certificate")
    certs.add_argument("--out", type=Path, required=True, help="folder for the TLS files")
    certs.add_argument("--hosts", nargs="+", help="names the SuperLink/SuperNodes are reached by")
    certs.add_argument("--exist-ok", action="store_true", help="keep existing files, exit 0")
    certs.set_defaults(handler=cmd_deploy_certs)
    submit = deploy_commands.add_parser(
        "submit", help="run the app on a running SuperLink; exit 0 only if it completed"
    )
    submit.add_argument("--superlink", required=True, help="HOST:PORT of the SuperLink")
    submit.add_argument("--ca", type=Path, help="CA certificate (default: --insecure)")
    submit.add_argument("--insecure", action="store_true", help="no TLS")
    submit.add_argument("--app", type=Path, help="Flower App folder (default: this project)")
    submit.add_argument("--run-config", default="", help="flwr run --run-config overrides")
    submit.add_argument("--logs", type=Path, default=Path("deploy-logs"), help="log folder")
    submit.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait")
    submit.set_defaults(handler=cmd_deploy_submit)
    compose = deploy_commands.add_parser("compose", help="print docker-compose.yml for N clients")
    compose.add_argument("--clients", type=int, default=3, help="number of SuperNodes")
    compose.add_argument("--node-auth", action="store_true", help="SuperNode authentication")
    node_keys = deploy_commands.add_parser("node-keys", help="write SuperNode auth key pairs")
    node_keys.add_argument("--out", type=Path, required=True, help="folder: node-<i>/auth_key")
    node_keys.add_argument("--nodes", type=int, required=True, help="number of SuperNodes")
    node_keys.add_argument("--exist-ok", action="store_true", help="keep existing keys, exit 0")
    node_keys.set_defaults(handler=cmd_deploy_node_keys)
    register = deploy_commands.add_parser(
        "register", help="register every node key of a folder with a running SuperLink"
    )
    register.add_argument("--superlink", required=True, help="HOST:PORT of the SuperLink")
    register.add_argument("--ca", type=Path, required=True, help="CA certificate (TLS)")
    register.add_argument("--keys", type=Path, required=True, help="folder of node-<i>/ keys")
    register.add_argument("--timeout", type=float, default=120.0, help="wait for the SuperLink")
    register.set_defaults(handler=cmd_deploy_register)
    compose.set_defaults(handler=cmd_deploy_compose)

    bench = commands.add_parser(
        "bench", help="encrypted vs plaintext aggregation: bytes, seconds, ratios (bench.json)"
    )
    bench.add_argument("--quick", action="store_true", help="small sizes (what CI runs)")
    bench.add_argument("--sizes", type=int, nargs="+", help="model sizes (parameters)")
    bench.add_argument("--clients", type=int, help="clients added per size")
    bench.add_argument("--presets", nargs="+", help="CKKS presets to measure")
    bench.add_argument("--no-end-to-end", action="store_true", help="skip the federations")
    bench.add_argument(
        "--scale", action="store_true", help="also a 1,000-client ckks simulation (minutes)"
    )
    bench.add_argument("--out", type=Path, default=Path("results/bench"), help="output folder")
    bench.set_defaults(handler=cmd_bench)

    attack = commands.add_parser(
        "attack", help="run privacy attacks on a run directory, as each attacker sees it"
    )
    attack.add_argument("--run", type=Path, required=True, help="run directory")
    attack.add_argument(
        "--threat",
        help="curious-server | outsider | colluding-client (default: all three)",
    )
    attack.add_argument(
        "--attacks", help="comma-separated attacks (default: all the threat allows)"
    )
    attack.add_argument(
        "--output", default="probabilities", help="outsider's answers: probabilities | labels"
    )
    attack.add_argument("--shadows", type=int, help="shadow models for shokri/LiRA (16)")
    attack.add_argument("--keys", type=Path, help="colluding client's key directory")
    attack.set_defaults(handler=cmd_attack)

    compare = commands.add_parser(
        "compare", help="the main job: every arm, every attack, one report"
    )
    compare.add_argument(
        "experiment",
        nargs="?",
        type=Path,
        help="comparison TOML (default experiments/compare.toml)",
    )
    compare.add_argument("--out", type=Path, default=Path("results/compare"), help="output folder")
    compare.add_argument("--quick", action="store_true", help="2 rounds, small attack budgets")
    compare.add_argument(
        "--force", action="store_true", help="rerun arms and attacks found in --out"
    )
    compare.set_defaults(handler=cmd_compare)

    rel = commands.add_parser(
        "release", help="key holders: decrypt a ckks run's final model and metrics"
    )
    rel.add_argument("--run", type=Path, required=True, help="run directory")
    rel.add_argument("--keys", type=Path, help="key directory (default: the run's key-dir)")
    rel.set_defaults(handler=cmd_release)
    return parser


def resolve_run_config(args: argparse.Namespace) -> Any:
    """Merge an experiment file and command-line flags into a validated ``RunConfig``."""
    from fedpriv.config import RunConfig

    overrides = {
        key: getattr(args, flag)
        for flag, (key, _) in RUN_FLAGS.items()
        if getattr(args, flag) is not None
    }
    if args.config is not None:
        config = RunConfig.from_toml(args.config, overrides)
    else:
        config = RunConfig.from_flower(overrides)
    out = args.out or Path("runs") / f"{config.aggregation}-{time.strftime('%Y%m%d-%H%M%S')}"
    return config.replace(out_dir=str(Path(out).resolve()))


def cmd_run(args: argparse.Namespace) -> int:
    """Handle `fedpriv run`."""
    from fedpriv.rundir import RunDirectory
    from fedpriv.simulation import check_runnable, run_simulation

    if args.resume is not None:
        config = _resumed_config(args)
    else:
        config = resolve_run_config(args)
    check_runnable(config)
    if not args.verbose:
        logging.getLogger("flwr").setLevel(logging.WARNING)
    rundir = RunDirectory(config.out_dir)
    with _RoundProgress(rundir, config.num_server_rounds, config.aggregation):
        path = run_simulation(config, verbose=args.verbose)
    _print_history(RunDirectory(path).read_history())
    print(f"results: {path}")
    return 0


def _resumed_config(args: argparse.Namespace) -> Any:
    """The configuration of the run in ``--resume DIR`` (no other federation flag allowed)."""
    from fedpriv.config import RunConfig
    from fedpriv.rundir import RunDirectory

    given = [f"--{flag.replace('_', '-')}" for flag in RUN_FLAGS if getattr(args, flag) is not None]
    if given or args.config is not None or args.out is not None:
        raise FedprivError(f"--resume takes the run's own configuration; drop {given or '--out'}")
    rundir = RunDirectory(args.resume.resolve())
    if not rundir.holds_run():
        raise FedprivError(f"{rundir.path} holds no run to resume")
    stored = RunConfig.from_flower(rundir.read_config())
    return stored.replace(resume=True, out_dir=str(rundir.path))


class _RoundProgress:
    """A rich progress bar that follows history.json while the federation runs."""

    def __init__(self, rundir: Any, total: int, label: str) -> None:
        self.rundir, self.total, self.label = rundir, total, label
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._follow, daemon=True)

    def __enter__(self) -> _RoundProgress:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)

    def _follow(self) -> None:
        columns = (
            TextColumn(f"[bold]{self.label}[/] rounds"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task("rounds", total=self.total)
            while not self.stop.wait(0.5):
                progress.update(task, completed=self._done())
            progress.update(task, completed=self._done())

    def _done(self) -> int:
        try:
            return len(self.rundir.read_history()["rounds"])
        except (OSError, ValueError, KeyError):
            return 0


def _print_history(history: dict[str, Any]) -> None:
    table = Table(title=f"{history['aggregation']} federation")
    for column in ("round", "accuracy", "loss", "seconds", "bytes up", "bytes down", "clients"):
        table.add_column(column, justify="right")
    for entry in history["rounds"]:
        accuracy = entry["accuracy"]
        table.add_row(
            str(entry["round"]),
            "-" if accuracy is None else f"{accuracy:.4f}",
            "-" if entry["loss"] is None else f"{entry['loss']:.4f}",
            f"{entry['seconds']:.2f}",
            f"{entry['bytes_up']:,}",
            f"{entry['bytes_down']:,}",
            str(len(entry["clients"])),
        )
    console.print(table)


def cmd_deploy_local(args: argparse.Namespace) -> int:
    """Handle `fedpriv deploy local`."""
    from fedpriv.deploy.local import LocalDeployment, deploy_local
    from fedpriv.rundir import RunDirectory

    config = resolve_run_config(args)
    deployment = LocalDeployment(
        config, args.out, tls=not args.insecure, node_auth=args.node_auth, timeout=args.timeout
    )
    started = time.monotonic()
    path = deploy_local(deployment, progress=lambda message: console.print(f"[dim]{message}"))
    seconds = time.monotonic() - started
    console.print(f"deployment finished in {seconds:.1f}s; every process stopped")
    _print_history(RunDirectory(path).read_history())
    print(f"results: {path}")
    return 0


def cmd_deploy_submit(args: argparse.Namespace) -> int:
    """Handle `fedpriv deploy submit`."""
    from fedpriv.deploy.local import APP_DIR, connect, submit_run

    if (args.ca is None) == (not args.insecure):
        raise FedprivError("give --ca CA_CERT for TLS, or --insecure")
    args.logs.mkdir(parents=True, exist_ok=True)
    ca = str(args.ca.resolve()) if args.ca else None
    status = submit_run(
        args.app or APP_DIR,
        args.run_config,
        connect(args.logs.resolve() / "flwr-home", args.superlink, ca),
        args.logs,
        args.timeout,
        lambda message: console.print(f"[dim]{message}"),
    )
    print(f"run {status['run-id']}: {status['status']}")
    print(f"results: {args.logs.resolve()} (serverapp.log, run-status.json)")
    return 0


def cmd_deploy_node_keys(args: argparse.Namespace) -> int:
    """Handle `fedpriv deploy node-keys`."""
    from fedpriv.deploy.local import NODE_KEY, make_node_key

    if args.nodes < 1:
        raise FedprivError("--nodes must be at least 1")
    for node in range(args.nodes):
        folder = args.out / f"node-{node}"
        if (folder / NODE_KEY).exists():
            if not args.exist_ok:
                raise FedprivError(f"{folder} already holds a key; refusing to overwrite it")
            continue
        make_node_key(folder)
    print(f"results: {args.out.resolve()} (node-<i>/auth_key 0600, node-<i>/auth_key.pub)")
    return 0


def cmd_deploy_register(args: argparse.Namespace) -> int:
    """Handle `fedpriv deploy register`."""
    import tempfile

    from fedpriv.deploy.local import NODE_PUBLIC_KEY, connect, register_node, wait_healthy

    keys = sorted(args.keys.glob(f"node-*/{NODE_PUBLIC_KEY}"))
    if not keys:
        raise FedprivError(f"{args.keys} holds no node-*/{NODE_PUBLIC_KEY}")
    ca = args.ca.resolve()
    wait_healthy(f"https://{args.superlink}/health", ca, timeout=args.timeout)
    with tempfile.TemporaryDirectory(prefix="fedpriv-flwr-") as home:
        env = connect(Path(home), args.superlink, str(ca))
        for key in keys:
            register_node(key, env, Path(home) / "register.log")
            print(f"registered {key.parent.name}")
    return 0


def cmd_deploy_certs(args: argparse.Namespace) -> int:
    """Handle `fedpriv deploy certs`."""
    from fedpriv.deploy.certs import (
        DEFAULT_HOSTS,
        SERVER_CERT,
        certificate_hosts,
        make_certificates,
    )

    hosts = tuple(args.hosts or DEFAULT_HOSTS)
    if (args.out / SERVER_CERT).exists():
        if not args.exist_ok:
            raise FedprivError(f"{args.out} already holds TLS material; refusing to overwrite it")
        missing = set(hosts) - certificate_hosts(args.out / SERVER_CERT)
        if missing:
            raise FedprivError(
                f"{args.out / SERVER_CERT} is not valid for {', '.join(sorted(missing))}; "
                "delete the folder to make new certificates"
            )
        print(f"results: {args.out.resolve()} (kept)")
        return 0
    paths = make_certificates(args.out, hosts)
    print(f"CA certificate (give to every client side): {paths['ca']}")
    print(f"SuperLink certificate and key (0600): {paths['cert']}, {paths['key']}")
    print(f"results: {args.out.resolve()}")
    return 0


def cmd_deploy_compose(args: argparse.Namespace) -> int:
    """Handle `fedpriv deploy compose`."""
    from fedpriv.deploy.compose import render

    if args.clients < 1:
        raise FedprivError("--clients must be at least 1")
    sys.stdout.write(render(args.clients, args.node_auth))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Handle `fedpriv bench`."""
    import dataclasses

    from fedpriv.bench import full_settings, measure_scale, quick_settings, run_bench
    from fedpriv.rundir import write_json

    settings = quick_settings() if args.quick else full_settings()
    changes: dict[str, Any] = {}
    if args.sizes:
        changes["sizes"] = tuple(args.sizes)
    if args.clients:
        changes["clients"] = args.clients
    if args.presets:
        changes["presets"] = tuple(args.presets)
    if args.no_end_to_end:
        changes["end_to_end"] = None
    settings = dataclasses.replace(settings, **changes)
    args.out.mkdir(parents=True, exist_ok=True)
    logging.getLogger("flwr").setLevel(logging.WARNING)
    say = lambda message: console.print(f"[dim]{message}")  # noqa: E731
    results = run_bench(settings, args.out, progress=say)
    if args.scale:
        say("scale: 1,000 virtual clients, 10% per round, 3 rounds (ckks, LeNet, mnist5k)")
        results["scale"] = measure_scale(args.out)
    write_json(args.out / "bench.json", results)
    _print_bench(results)
    print(f"results: {(args.out / 'bench.json').resolve()}")
    return 0


def _print_bench(results: dict[str, Any]) -> None:
    table = Table(title="ckks against plaintext (ratios measured side by side)")
    columns = (
        "preset", "parameters", "up ×", "down ×", "encrypt s/1M", "decrypt s/1M",
        "server parse+add s/1M", "add × numpy", "parse+add × plaintext",
    )  # fmt: skip
    for column in columns:
        table.add_column(column, justify="right")
    for row in results["sizes"]:
        table.add_row(
            row["preset"],
            f"{row['parameters']:,}",
            f"{row['bytes_up_ratio']:.2f}",
            f"{row['bytes_down_ratio']:.2f}",
            f"{row['encrypt_seconds_per_1m']:.3f}",
            f"{row['decrypt_seconds_per_1m']:.3f}",
            f"{row['server_parse_add_seconds_per_1m']:.3f}",
            f"{row['server_add_ratio']:.1f}",
            f"{row['server_parse_add_ratio']:.1f}",
        )
    Console(stderr=True, width=max(console.width, 150)).print(table)
    for entry in results["precision"]:
        console.print(
            f"precision {entry['preset']}: weighted mean of {entry['clients']} clients, max abs "
            f"error {entry['max_abs_error']:.2e}"
        )
    if "end_to_end" in results:
        e2e = results["end_to_end"]
        console.print(
            f"end to end ({e2e['config']}): round {e2e['plaintext']['round_seconds']:.2f}s "
            f"plaintext, {e2e['ckks']['round_seconds']:.2f}s ckks, ratio "
            f"{e2e['round_seconds_ratio']:.2f}; upload ratio {e2e['bytes_up_ratio']:.2f}"
        )
    if "scale" in results:
        scale = results["scale"]
        console.print(
            f"scale: {scale['config']['num_clients']} clients, {len(scale['rounds'])} rounds in "
            f"{scale['wall_seconds']:.0f}s, peak RSS {scale['peak_rss_bytes'] / 1024**3:.2f} GiB"
        )


def cmd_keys_new(args: argparse.Namespace) -> int:
    """Handle `fedpriv keys new`."""
    from fedpriv.crypto.keys import check_preset, provision_keys
    from fedpriv.crypto.presets import DEFAULT_PRESET

    preset = args.preset or DEFAULT_PRESET
    if (args.out / "client.ctx").exists():
        if not args.exist_ok:
            raise FedprivError(f"{args.out} already holds a key set; refusing to overwrite it")
        check_preset(args.out, preset)
        print(f"results: {args.out.resolve()} (kept)")
        return 0
    paths = provision_keys(args.out, preset, args.server_out)
    print(f"client context (secret key, give to clients only): {paths['client']}")
    print(f"server context (parameters only): {paths['server']}")
    print(f"results: {args.out.resolve()}")
    return 0


def cmd_keys_presets(args: argparse.Namespace) -> int:
    """Handle `fedpriv keys presets`."""
    from fedpriv.crypto.presets import PRESETS

    table = Table(title="CKKS presets")
    for column in ("name", "N", "primes", "scale", "encryption", "sum bound", "about"):
        table.add_column(column)
    for p in PRESETS.values():
        table.add_row(
            p.name,
            str(p.poly_modulus_degree),
            str(list(p.coeff_mod_bit_sizes)),
            f"2^{p.scale_bits}",
            p.encryption,
            f"{p.sum_bound:.3g}",
            p.description,
        )
    Console(width=160).print(table)
    return 0


def cmd_attack(args: argparse.Namespace) -> int:
    """Handle `fedpriv attack`."""
    from dataclasses import replace

    from fedpriv.attacks.runner import SuiteSettings, run_attacks
    from fedpriv.attacks.views import THREATS

    if not (args.run / "config.json").exists():
        raise FedprivError(f"{args.run} is not a run directory (no config.json)")
    threats = [args.threat] if args.threat else list(THREATS)
    settings = SuiteSettings(outsider_output=args.output)
    if args.shadows is not None:
        settings = replace(
            settings, membership=replace(settings.membership, num_shadows=args.shadows)
        )
    attacks = args.attacks.split(",") if args.attacks else None
    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    table = Table(title=f"attacks on {args.run}")
    for column in ("threat", "attack", "result"):
        table.add_column(column)
    with Progress(*columns, console=console) as progress:
        bars: dict[str, Any] = {}

        def report(name: str, fraction: float) -> None:
            if name not in bars:
                bars[name] = progress.add_task(name, total=1.0)
            progress.update(bars[name], completed=fraction)

        for threat in threats:
            chosen = attacks if args.threat else None
            for result in run_attacks(args.run, threat, chosen, settings, args.keys, report):
                table.add_row(threat, result["attack"], _summary(result))
    console.print(table)
    print(f"results: {(args.run / 'attacks').resolve()}")
    return 0


def _summary(result: dict[str, Any]) -> str:
    if not result["applicable"]:
        return f"not applicable: {result['reason']}"
    m = result["metrics"]
    if "auc" in m:
        return f"AUC {m['auc']:.3f}, TPR@0.1%FPR {m['tpr_at_0_1pct_fpr']:.3f}"
    if "psnr" in m:
        return f"PSNR {m['psnr']:.1f} dB, SSIM {m['ssim']:.3f}, labels {m['label_accuracy']:.2f}"
    return (
        f"eval accuracy {m['eval_accuracy']:.2f}, SSIM to class mean {m['ssim_to_class_mean']:.3f}"
    )


def cmd_compare(args: argparse.Namespace) -> int:
    """Handle `fedpriv compare`."""
    from fedpriv.compare import DEFAULT_EXPERIMENT, load_comparison, run_comparison
    from fedpriv.report.compare_report import SUMMARY_HEADER, summary_rows

    comparison = load_comparison(args.experiment or DEFAULT_EXPERIMENT, quick=args.quick)
    logging.getLogger("flwr").setLevel(logging.WARNING)
    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("comparison", total=len(comparison.arms) * 4)
        bars: dict[str, Any] = {}

        def step(arm: str, what: str) -> None:
            progress.update(task, advance=1, description=f"{arm}: {what}")

        def attack_step(name: str, fraction: float) -> None:
            if name not in bars:
                bars[name] = progress.add_task(f"  {name}", total=1.0)
            progress.update(bars[name], completed=fraction)

        results = run_comparison(comparison, args.out, args.force, step, attack_step)
        progress.update(task, completed=len(comparison.arms) * 4)
    table = Table(title="fedpriv comparison")
    for column in SUMMARY_HEADER:
        table.add_column(column, justify="right")
    for row in summary_rows(results):
        table.add_row(*row)
    Console(width=200).print(table)
    print(f"results: {args.out.resolve()} (report.html, report.md, results.json)")
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    """Handle `fedpriv release`."""
    from fedpriv.release import release

    path = release(args.run, args.keys)
    print(f"results: {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `fedpriv` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except FedprivError as err:
        print(f"fedpriv: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
