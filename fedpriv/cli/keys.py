"""`fedpriv keys`: CKKS key provisioning for deployments, and the presets."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from fedpriv.crypto.authenticated import AuthPolicy
from fedpriv.crypto.files import write_public
from fedpriv.crypto.keys import CLIENT_CONTEXT, check_preset, provision_keys
from fedpriv.crypto.presets import DEFAULT_PRESET, MAX_COEFF_BITS_128, PRESETS, get_preset
from fedpriv.crypto.signing import ROSTER_FILE
from fedpriv.errors import ConfigError
from fedpriv.schemes.base import identity_folders


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `fedpriv keys new` and `fedpriv keys presets`."""
    keys = commands.add_parser("keys", help="CKKS key provisioning for deployments")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    new = key_commands.add_parser("new", help="write a client (secret) and a server context")
    new.add_argument("--out", type=Path, required=True, help="key directory to create")
    new.add_argument("--preset", default=DEFAULT_PRESET, help="CKKS preset (default: %(default)s)")
    new.add_argument(
        "--server-out",
        type=Path,
        help="write the server's share (parameters only) here instead of into --out",
    )
    new.add_argument(
        "--min-uploads",
        type=int,
        default=2,
        help="fewest uploads of one round an aggregate the key holders accept may sum "
        "(default: %(default)s; client-level DP: the clients a round samples)",
    )
    new.add_argument(
        "--unauthenticated",
        action="store_true",
        help="no MAC key: clients accept any aggregate (secure against an honest server only; "
        "run with ckks-authenticated=false)",
    )
    new.add_argument(
        "--nodes",
        type=int,
        help="a threshold preset: the SuperNodes (parties) to make signing keys for; each "
        "gets node-<partition>/ with its own key and the roster, the server server/roster.json",
    )
    new.add_argument("--exist-ok", action="store_true", help="keep an existing key set, exit 0")
    new.set_defaults(handler=handle_new, parser=new)
    presets = key_commands.add_parser("presets", help="list the CKKS presets")
    presets.set_defaults(handler=handle_presets, parser=presets)


def handle_new(args: argparse.Namespace) -> int:
    """Write a key set (refusing to overwrite one)."""
    if get_preset(args.preset).backend == "threshold":
        return _threshold_identities(args)
    if (args.out / CLIENT_CONTEXT).exists():
        if not args.exist_ok:
            raise ConfigError(f"{args.out} already holds a key set; refusing to overwrite it")
        check_preset(args.out, args.preset)
        print(f"results: {args.out.resolve()} (kept)")
        return 0
    packed = get_preset(args.preset).backend == "packed"
    auth = None
    if not args.unauthenticated and packed:
        auth = AuthPolicy(args.min_uploads, args.min_uploads)
    elif not packed:
        print(
            f"preset {args.preset}: no MAC key (its ciphertexts are not in numpy); runs with "
            "it need ckks-authenticated=false (secure against an honest server only)"
        )
    paths = provision_keys(args.out, args.preset, args.server_out, auth)
    print(f"client context (secret key, give to clients only): {paths['client']}")
    if "mac" in paths:
        print(f"MAC key (clients and the key holder only): {paths['mac']}")
    print(f"server context (parameters only): {paths['server']}")
    print(f"results: {args.out.resolve()}")
    return 0


def _threshold_identities(args: argparse.Namespace) -> int:
    """Threshold CKKS: each party's signing key and the roster (the parties make the CKKS key).

    Authenticated, every party signs its key contribution and its uploads: one signing key
    per node, and the roster of public keys for the server and every party.
    """
    if args.unauthenticated:
        print(
            f"preset {args.preset}: the parties make the keys in the run; unauthenticated, "
            "nothing to provision"
        )
        return 0
    if args.nodes is None or args.nodes < 2:
        raise ConfigError(
            f"preset {args.preset} (threshold CKKS) needs --nodes N >= 2: the "
            "parties whose signing keys to make"
        )
    roster = args.out / "server" / ROSTER_FILE
    if roster.exists():
        if not args.exist_ok:
            raise ConfigError(f"{args.out} already holds a roster; refusing to overwrite it")
        print(f"results: {args.out.resolve()} (kept)")
        return 0
    folders = identity_folders(args.out, args.nodes, max(2, args.min_uploads))
    roster.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_public(roster, (folders.client / ROSTER_FILE).read_bytes())
    for partition, folder in sorted(folders.nodes.items()):
        print(f"node {partition} (its own signing key, give to that SuperNode only): {folder}")
    print(f"server (the roster, public keys only): {roster.parent}")
    print(f"provisioner's copy (every signing key: keep it offline): {folders.client}")
    print(f"results: {args.out.resolve()}")
    return 0


def handle_presets(args: argparse.Namespace) -> int:
    """Print the presets."""
    table = Table(title="CKKS presets")
    columns = ("name", "N", "primes", "q bits", "scale", "encryption", "sum bound", "smudging")
    for column in (*columns, "about"):
        table.add_column(column)
    for p in PRESETS.values():
        bits = sum(p.coeff_mod_bit_sizes)
        limit = MAX_COEFF_BITS_128[p.poly_modulus_degree]
        table.add_row(
            p.name,
            str(p.poly_modulus_degree),
            str(list(p.coeff_mod_bit_sizes)),
            f"{bits} (<= {limit}: 128-bit)",
            f"2^{p.scale_bits}",
            p.encryption,
            f"{p.sum_bound:.3g}",
            f"2^{p.smudging_bits} x noise, {p.max_parties} parties" if p.smudging_bits else "-",
            p.description,
        )
    Console(width=160).print(table)
    return 0
