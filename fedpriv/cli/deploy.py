"""`fedpriv deploy`: Flower's Deployment Engine on loopback, compose files, credentials."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from fedpriv.cli.flags import add_federation_flags, resolve_run_config
from fedpriv.cli.progress import console
from fedpriv.cli.tables import print_history
from fedpriv.crypto.signing import ROSTER_FILE
from fedpriv.deploy.compose import render
from fedpriv.deploy.credentials import (
    CA_CERT,
    CA_FOLDER,
    DEFAULT_HOSTS,
    NODE_KEY,
    NODE_PUBLIC_KEY,
    SERVER_CERT,
    SERVER_KEY,
    SUPERLINK_FOLDER,
    certificate_hosts,
    make_certificates,
    make_node_identities,
    make_node_key,
    make_service_certificates,
)
from fedpriv.deploy.flwr_cli import (
    RUN_STATUS,
    connect,
    register_node,
    submit_run,
    wait_healthy,
)
from fedpriv.errors import ConfigError


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `fedpriv deploy local|certs|submit|compose|node-keys|identities|register`."""
    deploy = commands.add_parser("deploy", help="Flower Deployment Engine: loopback, compose, TLS")
    sub = deploy.add_subparsers(dest="deploy_command", required=True)

    local = sub.add_parser(
        "local", help="the compose topology as processes on loopback: start, run, stop"
    )
    add_federation_flags(local)
    local.add_argument("--out", type=Path, required=True, help="folder for run, logs, keys")
    local.add_argument("--insecure", action="store_true", help="no TLS (default: TLS everywhere)")
    local.add_argument("--node-auth", action="store_true", help="SuperNode authentication")
    local.add_argument(
        "--timeout", type=float, default=900.0, help="seconds to wait for the run (%(default)s)"
    )
    local.set_defaults(handler=handle_local, parser=local)

    certs = sub.add_parser("certs", help="write a CA and a SuperLink certificate")
    certs.add_argument("--out", type=Path, required=True, help="folder for the TLS files")
    certs.add_argument("--hosts", nargs="+", help="names the SuperLink/SuperNodes are reached by")
    certs.add_argument(
        "--supernodes",
        nargs="+",
        help="per-service layout: ca/, superlink/ (for --hosts) and one folder per SuperNode "
        "named, each certificate valid for that name only",
    )
    certs.add_argument("--exist-ok", action="store_true", help="keep existing files, exit 0")
    certs.set_defaults(handler=handle_certs, parser=certs)

    submit = sub.add_parser(
        "submit", help="run the app on a running SuperLink; exit 0 only if it completed"
    )
    submit.add_argument("--superlink", required=True, help="HOST:PORT of the SuperLink")
    submit.add_argument("--ca", type=Path, help="CA certificate (default: --insecure)")
    submit.add_argument("--insecure", action="store_true", help="no TLS")
    submit.add_argument("--app", type=Path, help="Flower App folder (default: this project)")
    submit.add_argument("--run-config", default="", help="flwr run --run-config overrides")
    submit.add_argument("--logs", type=Path, default=Path("deploy-logs"), help="log folder")
    submit.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait")
    submit.set_defaults(handler=handle_submit, parser=submit)

    compose = sub.add_parser("compose", help="print docker-compose.yml for N clients")
    compose.add_argument("--clients", type=int, default=3, help="number of SuperNodes (3)")
    compose.add_argument("--node-auth", action="store_true", help="SuperNode authentication")
    compose.set_defaults(handler=handle_compose, parser=compose)

    node_keys = sub.add_parser("node-keys", help="write SuperNode auth key pairs")
    node_keys.add_argument("--out", type=Path, required=True, help="folder: node-<i>/auth_key")
    node_keys.add_argument("--nodes", type=int, required=True, help="number of SuperNodes")
    node_keys.add_argument("--exist-ok", action="store_true", help="keep existing keys, exit 0")
    node_keys.set_defaults(handler=handle_node_keys, parser=node_keys)

    identities = sub.add_parser(
        "identities", help="write each node's signing key (own folder) and the public roster"
    )
    identities.add_argument(
        "--out", type=Path, required=True, help="folder: node-<p>/party-<p>.key, one per node"
    )
    identities.add_argument(
        "--roster-out", type=Path, required=True, help="folder for roster.json (public)"
    )
    identities.add_argument("--nodes", type=int, required=True, help="number of SuperNodes")
    identities.add_argument(
        "--min-uploads",
        type=int,
        default=2,
        help="fewest clients that must sign one model, and signed uploads in one "
        "ckks-threshold sum (default: %(default)s)",
    )
    identities.add_argument(
        "--exist-ok", action="store_true", help="keep identities made for these nodes, exit 0"
    )
    identities.set_defaults(handler=handle_identities, parser=identities)

    register = sub.add_parser(
        "register", help="register every node key of a folder with a running SuperLink"
    )
    register.add_argument("--superlink", required=True, help="HOST:PORT of the SuperLink")
    register.add_argument("--ca", type=Path, required=True, help="CA certificate (TLS)")
    register.add_argument("--keys", type=Path, required=True, help="folder of node-<i>/ keys")
    register.add_argument("--timeout", type=float, default=120.0, help="wait for the SuperLink")
    register.set_defaults(handler=handle_register, parser=register)


def handle_local(args: argparse.Namespace) -> int:
    """Start the topology, run the federation, stop everything."""
    config = resolve_run_config(args)
    from fedpriv.deploy.local import LocalDeployment, deploy_local
    from fedpriv.rundir import RunDirectory

    deployment = LocalDeployment(
        config, args.out, tls=not args.insecure, node_auth=args.node_auth, timeout=args.timeout
    )
    started = time.monotonic()
    path = deploy_local(deployment, progress=lambda message: console.print(f"[dim]{message}"))
    seconds = time.monotonic() - started
    console.print(f"deployment finished in {seconds:.1f}s; every process stopped")
    print_history(RunDirectory(path).read_history())
    print(f"results: {path}")
    return 0


def handle_submit(args: argparse.Namespace) -> int:
    """Submit the app to a running SuperLink and wait for its status."""
    from fedpriv.deploy.local import APP_DIR

    if (args.ca is None) == (not args.insecure):
        raise ConfigError("give --ca CA_CERT for TLS, or --insecure")
    if (args.logs / RUN_STATUS).exists():
        # Checked before anything is submitted: the earlier run's logs stay as they are.
        raise ConfigError(
            f"{args.logs} already holds the logs of an earlier run ({RUN_STATUS}); choose "
            "another --logs (under docker compose: another FEDPRIV_RUN_NAME)"
        )
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


def handle_node_keys(args: argparse.Namespace) -> int:
    """Write one key pair per node (refusing to overwrite)."""
    if args.nodes < 1:
        raise ConfigError("--nodes must be at least 1")
    for node in range(args.nodes):
        folder = args.out / f"node-{node}"
        if (folder / NODE_KEY).exists():
            if not args.exist_ok:
                raise ConfigError(f"{folder} already holds a key; refusing to overwrite it")
            continue
        make_node_key(folder)
    print(f"results: {args.out.resolve()} (node-<i>/auth_key 0600, node-<i>/auth_key.pub)")
    return 0


def handle_identities(args: argparse.Namespace) -> int:
    """Write the nodes' signing keys and the roster (or keep them, with --exist-ok)."""
    if args.nodes < 1:
        raise ConfigError("--nodes must be at least 1")
    kept = (args.roster_out / ROSTER_FILE).is_file()
    roster = make_node_identities(
        args.out, args.roster_out, args.nodes, args.min_uploads, args.exist_ok
    )
    print(
        f"roster (public; {len(roster.keys)} nodes, {roster.min_uploads} signers per model): "
        f"{(args.roster_out / ROSTER_FILE).resolve()}"
    )
    layout = "kept" if kept else "node-<p>/party-<p>.key 0600, each node's own only"
    print(f"results: {args.out.resolve()} ({layout})")
    return 0


def handle_register(args: argparse.Namespace) -> int:
    """Register every node key of a folder."""
    keys = sorted(args.keys.glob(f"node-*/{NODE_PUBLIC_KEY}"))
    if not keys:
        raise ConfigError(f"{args.keys} holds no node-*/{NODE_PUBLIC_KEY}")
    ca = args.ca.resolve()
    wait_healthy(f"https://{args.superlink}/health", ca, timeout=args.timeout)
    with tempfile.TemporaryDirectory(prefix="fedpriv-flwr-") as home:
        env = connect(Path(home), args.superlink, str(ca))
        for key in keys:
            register_node(key, env, Path(home) / "register.log")
            print(f"registered {key.parent.name}")
    return 0


def handle_certs(args: argparse.Namespace) -> int:
    """Write TLS material (or keep what is there, with --exist-ok)."""
    hosts = tuple(args.hosts or DEFAULT_HOSTS)
    supernodes = tuple(args.supernodes or ())
    expected: dict[Path, tuple[str, ...]] = {Path(SERVER_CERT): hosts}
    if supernodes:
        expected = {Path(SUPERLINK_FOLDER) / SERVER_CERT: hosts}
        expected.update({Path(n) / SERVER_CERT: (n,) for n in supernodes})
    if any((args.out / path).exists() for path in expected):
        if not args.exist_ok:
            raise ConfigError(f"{args.out} already holds TLS material; refusing to overwrite it")
        for path, names in expected.items():
            # The CA's key is gone: a certificate for a new name needs a new CA.
            found = certificate_hosts(args.out / path) if (args.out / path).exists() else set()
            missing = set(names) - found
            if missing:
                raise ConfigError(
                    f"{args.out / path} is not valid for {', '.join(sorted(missing))}; "
                    "delete the TLS material to make new certificates"
                )
        print(f"results: {args.out.resolve()} (kept)")
        return 0
    if supernodes:
        folders = make_service_certificates(args.out, hosts, supernodes)
        print(f"CA certificate (give to every service): {folders[CA_FOLDER] / CA_CERT}")
        for name, folder in folders.items():
            if name != CA_FOLDER:
                print(f"{name}: {folder / SERVER_CERT}, key (0600) {folder / SERVER_KEY}")
    else:
        paths = make_certificates(args.out, hosts)
        print(f"CA certificate (give to every client side): {paths['ca']}")
        print(f"SuperLink certificate and key (0600): {paths['cert']}, {paths['key']}")
    print(f"results: {args.out.resolve()}")
    return 0


def handle_compose(args: argparse.Namespace) -> int:
    """Print the compose file."""
    if args.clients < 1:
        raise ConfigError("--clients must be at least 1")
    sys.stdout.write(render(args.clients, args.node_auth))
    return 0
