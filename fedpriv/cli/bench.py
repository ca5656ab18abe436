"""`fedpriv bench`: encrypted against plaintext aggregation, bytes and seconds, as ratios."""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path
from typing import Any

from fedpriv.bench.settings import full_settings, quick_settings
from fedpriv.cli.progress import Reporter, console
from fedpriv.cli.tables import print_summary
from fedpriv.narrative import predicted


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `fedpriv bench`."""
    bench = commands.add_parser(
        "bench", help="encrypted vs plaintext aggregation: bytes, seconds, ratios (bench.json)"
    )
    bench.add_argument("--quick", action="store_true", help="small sizes (what CI runs)")
    bench.add_argument("--sizes", type=int, nargs="+", help="model sizes (parameters)")
    bench.add_argument("--clients", type=int, help="clients added per size")
    bench.add_argument("--presets", nargs="+", help="CKKS presets to measure")
    bench.add_argument("--no-end-to-end", action="store_true", help="skip the federations")
    bench.add_argument(
        "--scale", action="store_true", help="also a 10,000-client ckks simulation (minutes)"
    )
    bench.add_argument(
        "--deploy",
        action="store_true",
        help="also the loopback deployment (3 clients, 3 ckks rounds) beside simulation",
    )
    bench.add_argument(
        "--out", type=Path, default=Path("results/bench"), help="output folder (%(default)s)"
    )
    bench.set_defaults(handler=handle, parser=bench)


def handle(args: argparse.Namespace) -> int:
    """Measure, save ``bench.json``, print the table."""
    from fedpriv.bench.deployment import measure_deploy
    from fedpriv.bench.federation import measure_scale
    from fedpriv.bench.run import run_bench
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
    with Reporter() as reporter:
        results = run_bench(settings, args.out, progress=reporter.say)
        if args.scale:
            reporter.say("scale: 10,000 virtual clients, 1% per round, 3 rounds (ckks, LeNet)")
            results.scale = measure_scale(args.out)
        if args.deploy:
            reporter.say("deploy: 3 SuperNodes on loopback (TLS), 3 ckks rounds; then simulation")
            results.deploy = measure_deploy(args.out)
    data = results.to_json()
    write_json(args.out / "bench.json", data)
    print_bench(data)
    print(f"results: {(args.out / 'bench.json').resolve()}")
    return 0


# What each column of the bench table means, printed under it (docs/how-to/benchmark.md
# says the same at length).
BENCH_LEGEND = (
    "Ratios are ckks against plaintext, measured side by side; s/1M: seconds per million "
    "parameters on this machine.",
    "up ×: one client's upload. down × K: what each client downloads when K uploads were "
    "summed and c1 travels as their seeds; down expanded: c1 expanded by the server (what a "
    "sum past the break-even of ckks-link-mbps gets).",
    "decrypt × K: a client's decryption of that sum (every seed expanded first); expanded: "
    "of the expanded sum. '-': the preset has no seed list.",
    "parse+add: the server's parse and sum of one upload (s/1M, and × plaintext FedAvg).",
)


def print_bench(results: dict[str, Any]) -> None:
    """The ratios table (split to fit 120 columns, with its legend) and one line per extra."""
    header = [
        "preset / parameters", "up ×", "down × 10", "down × 100", "down × 1000",
        "down expanded", "encrypt s/1M", "decrypt × 10 s/1M", "decrypt × 100 s/1M",
        "decrypt × 1000 s/1M", "decrypt expanded s/1M", "parse+add s/1M",
        "parse+add × plaintext",
    ]  # fmt: skip
    rows = []
    for row in results["sizes"]:
        down = row["bytes_down_ratio_by_clients"]
        decrypt = row["decrypt_seconds_per_1m_by_clients"]
        seeded = bool(row.get("bytes_down_expanded_ratio"))
        rows.append(
            [
                f"{row['preset']} / {row['parameters']:,}",
                f"{row['bytes_up_ratio']:.2f}",
                *(f"{down[k]:.2f}" for k in ("10", "100", "1000")),
                f"{row['bytes_down_expanded_ratio']:.2f}" if seeded else "-",
                f"{row['encrypt_seconds_per_1m']:.3f}",
                *(_seconds(decrypt[k]) for k in ("10", "100", "1000")),
                f"{row['decrypt_seconds_expanded_per_1m']:.3f}" if seeded else "-",
                f"{row['server_parse_add_seconds_per_1m']:.3f}",
                f"{row['server_parse_add_ratio']:.1f}",
            ]
        )
    print_summary(header, rows, title="ckks against plaintext (ratios measured side by side)")
    for line in BENCH_LEGEND:
        console.print(line)
    for entry in results["precision"]:
        console.print(
            f"precision {entry['preset']}: weighted mean of {entry['clients']} clients "
            f"(bound {entry['bound']:g}), max abs error {entry['max_abs_error']:.2e}, std "
            f"{entry['std_error']:.2e} (predicted {predicted(entry['predicted_std'])})"
        )
    for row in results.get("authentication", []):
        console.print(
            f"authenticated {row['preset']}, {row['parameters']:,} parameters, "
            f"{row['clients']} clients: tag {row['tag_seconds_per_1m']:.3f} s/1M, verify "
            f"{row['verify_seconds_per_1m']:.3f} s/1M; client seconds "
            f"{row['client_seconds_ratio']:.2f}x, server sum {row['server_seconds_ratio']:.2f}x, "
            f"bytes {row['bytes_ratio']:.4f}x unauthenticated"
        )
    for row in results.get("threshold_verification", []):
        console.print(
            f"authenticated {row['preset']}, {row['parameters']:,} parameters, "
            f"{row['clients']} uploads: decryption request {row['request_bytes_ratio']:.1f}x the "
            "passive one's bytes (every upload's signature and digest), sign "
            f"{row['sign_seconds_per_1m']:.3f} s/1M, verify {row['verify_seconds_per_1m']:.3f} s/1M"
        )
    if "end_to_end" in results:
        e2e = results["end_to_end"]
        federation = e2e["config"]
        console.print(
            f"end to end ({federation['model']} on {federation['dataset']}, "
            f"{federation['num_clients']} clients, {federation['num_server_rounds']} rounds): "
            f"round {e2e['plaintext']['round_seconds']:.2f}s plaintext, "
            f"{e2e['ckks']['round_seconds']:.2f}s ckks, ratio {e2e['round_seconds_ratio']:.2f}; "
            f"upload ratio {e2e['bytes_up_ratio']:.2f}"
        )
        if "ckks_unauthenticated" in e2e:
            console.print(
                f"authenticated ckks against unauthenticated: round "
                f"{e2e['authenticated_round_seconds_ratio']:.2f}x, bytes "
                f"{e2e['authenticated_bytes_ratio']:.4f}x"
            )
    if "deploy" in results:
        deploy = results["deploy"]
        console.print(
            f"deployment ({deploy['config']['num_clients']} clients, "
            f"{deploy['config']['num_server_rounds']} rounds, median of rounds 2+): "
            f"{deploy['deployment_round_seconds']:.1f}s a round on the Deployment Engine, "
            f"{deploy['simulation_round_seconds']:.2f}s in simulation, ratio "
            f"{deploy['round_seconds_ratio']:.1f}"
            + (
                f" (Flower's executor: {deploy['flower_executor_round_seconds']:.1f}s a round, "
                f"{deploy['fork_speedup']:.1f}x the forked)"
                if "fork_speedup" in deploy
                else ""
            )
        )
        if deploy.get("cpu"):
            from fedpriv.bench.deployment import cpu_sentence

            console.print(cpu_sentence(deploy["cpu"]))
    if "scale" in results:
        scale = results["scale"]
        console.print(
            f"scale: {scale['config']['num_clients']} clients, {len(scale['rounds'])} rounds in "
            f"{scale['wall_seconds']:.0f}s, peak RSS {scale['peak_rss_bytes'] / 1024**3:.2f} GiB"
        )


def _seconds(value: float) -> str:
    """Seconds, or '-' where the preset has none to measure (NaN)."""
    return "-" if value != value else f"{value:.3f}"
