"""``docker-compose.yml``: the topology as containers, generated from the same flags as loopback.

One module: the compose file is one document; its services share the volumes, identities and
flags defined together here.
"""

from __future__ import annotations

from typing import Any

import yaml

from fedpriv.config import RunConfig
from fedpriv.crypto.signing import IDENTITIES_DIR
from fedpriv.deploy import topology
from fedpriv.deploy.credentials import CA_FOLDER, DEFAULT_HOSTS, SUPERLINK_FOLDER
from fedpriv.errors import ConfigError

# `fedpriv deploy compose --clients N` prints the file; the repository's ``docker-compose.yml``
# is its output for three clients (a test keeps the two identical).

IMAGE = "fedpriv:latest"
# What a running service sees: the CA certificate (every service) and its own TLS folder
# (the SuperLink's, or a SuperNode's own), each from its own volume.
CA_DIR, TLS_DIR = "/certs/ca", "/certs/tls"
CERTS = topology.TlsFiles(f"{CA_DIR}/ca.crt", f"{TLS_DIR}/server.pem", f"{TLS_DIR}/server.key")
CA_VOLUME, SUPERLINK_TLS_VOLUME = "ca", "superlink-tls"
KEY_DIR = "/keys"  # where each side's own key volume is mounted
CLIENT_KEYS_VOLUME, SERVER_KEYS_VOLUME = "client-keys", "server-keys"
RUNS = "/runs"
# Where the one-shot provisioning services write into the volumes they fill. Distinct from
# the running services' mount points, so that no volume receives the image's other folders.
PROVISION = "/provision"
NODE_KEYS = f"{PROVISION}/node-keys"  # all nodes' keys, in the one-shot services only
NODE_KEY_DIR = "/node-key"  # one node's own key, in that SuperNode
# Signing identities: each node's key in a volume of its own, mounted into that node's
# ClientApp SuperExec over the (read-only) key set, where its key-dir expects it; the roster
# (public) lies in the key set's volume.
IDENTITIES = f"{PROVISION}/identities"  # all nodes' signing keys, in the one-shot service only
NODE_IDENTITY_DIR = f"{KEY_DIR}/{IDENTITIES_DIR}"
MAX_SUPERNODES = 64  # per-node mount points the image creates owned by its user (Dockerfile)
# Read by compose from the environment (or an .env file) when the run is submitted.
ENVIRONMENT = {
    "FEDPRIV_NUM_CLIENTS": "clients of the run (the SuperNodes holding partitions 0..N-1)",
    "FEDPRIV_MIN_CLIENTS": "clients a round needs (default: all); fewer let a round go on "
    "without a node that died",
    "FEDPRIV_AGGREGATION": "plaintext, ckks, ckks-threshold or secagg",
    "FEDPRIV_ROUNDS": "num-server-rounds",
    "FEDPRIV_DATASET": "dataset of the run",
    "FEDPRIV_MODEL": "model of the run",
    "FEDPRIV_CKKS_PRESET": "CKKS preset the keys are provisioned for (a packed one carries "
    "the MAC key authenticated ckks needs)",
    "FEDPRIV_CKKS_AUTHENTICATED": "false for the unauthenticated ckks protocol (secure "
    "against an honest server only; what a preset of another backend needs)",
    "FEDPRIV_MODEL_CONSISTENCY": "false to let clients train on a model others did not sign "
    "(plaintext, secagg, ckks-threshold)",
    "FEDPRIV_THRESHOLD_AUTHENTICATED": "false for the passive ckks-threshold protocol (secure "
    "against an honest server only)",
    "FEDPRIV_RUN_NAME": "run directory name in the runs volume",
    "FEDPRIV_BASE_IMAGE": "base image of the build (python3 with venv; see docs for offline)",
}
DEFAULTS = {
    "FEDPRIV_AGGREGATION": "ckks",
    "FEDPRIV_ROUNDS": "3",
    "FEDPRIV_DATASET": "digits",
    "FEDPRIV_MODEL": "mlp",
    "FEDPRIV_CKKS_PRESET": "n4096-packed",
    "FEDPRIV_CKKS_AUTHENTICATED": "true",
    "FEDPRIV_MODEL_CONSISTENCY": "true",
    "FEDPRIV_THRESHOLD_AUTHENTICATED": "true",
    "FEDPRIV_RUN_NAME": "run",
    "FEDPRIV_BASE_IMAGE": "python:3.11-slim",
}


def _var(name: str, default: str | int) -> str:
    return f"${{{name}:-{default}}}"


def _service(command: list[str], volumes: list[str], **extra: Any) -> dict[str, Any]:
    # Only `certs` builds the image; the others never look for it on a registry (an `up`
    # before `build` builds it through `certs` instead of pulling fedpriv:latest).
    service: dict[str, Any] = {"image": IMAGE, "pull_policy": "never", "command": command}
    if volumes:
        service["volumes"] = volumes
    service.update(extra)
    return service


def ca_ro_volume() -> str:
    """The CA certificate's volume, read-only at :data:`CA_DIR`: every service gets it."""
    return f"{CA_VOLUME}:{CA_DIR}:ro"


def _done(*services: str) -> dict[str, Any]:
    return {name: {"condition": "service_completed_successfully"} for name in services}


def supernode_name(partition: int) -> str:
    """Compose service name of a client's SuperNode."""
    return f"supernode-{partition}"


def node_key_volume(partition: int) -> str:
    """The volume holding one SuperNode's authentication key (that node mounts only its own)."""
    return f"node-key-{partition}"


def node_tls_volume(partition: int) -> str:
    """The volume holding one SuperNode's TLS certificate and key (that node's only)."""
    return f"{supernode_name(partition)}-tls"


def node_identity_volume(partition: int) -> str:
    """The volume holding one node's signing key (that node's ClientApp SuperExec only)."""
    return f"{supernode_name(partition)}-identity"


def min_uploads(num_clients: int) -> tuple[int, int]:
    """Fewest uploads of an accepted sum: the MAC key's, and the roster's (also signers).

    What ``fedpriv deploy local`` provisions for a run of every SuperNode with the default
    settings: ``auth-min-uploads`` for authenticated ckks; for the roster, which model
    consistency and authenticated ckks-threshold share, at least ckks-threshold's ``t``
    too. Each capped at the clients.
    """
    config = RunConfig(num_clients=num_clients)
    mac = min(config.auth_min_uploads, num_clients)
    return mac, min(max(mac, config.decryption_threshold), num_clients)


def _node_auth_services(num_clients: int, superlink: str) -> dict[str, Any]:
    """One-shot services that make each node's key and register it before the nodes start."""
    keys = [f"{node_key_volume(i)}:{NODE_KEYS}/node-{i}" for i in range(num_clients)]
    return {
        "node-keys": _service(
            [
                "fedpriv",
                "deploy",
                "node-keys",
                "--exist-ok",
                "--out",
                NODE_KEYS,
                "--nodes",
                str(num_clients),
            ],
            keys,
            depends_on=_done("certs"),
        ),  # fmt: skip
        "register": _service(
            [
                "fedpriv",
                "deploy",
                "register",
                "--superlink",
                superlink,
                "--ca",
                CERTS.ca,
                "--keys",
                NODE_KEYS,
            ],
            [ca_ro_volume(), *(f"{v}:ro" for v in keys)],
            depends_on={"superlink": {"condition": "service_started"}, **_done("node-keys")},
        ),  # fmt: skip
    }


def compose_file(num_clients: int = 3, node_auth: bool = False) -> dict[str, Any]:
    """The compose document for ``num_clients`` SuperNodes (TLS on every connection).

    With ``node_auth`` the SuperLink admits registered SuperNodes only: a one-shot service
    makes each node's key, another registers them, and each node mounts only its own key.
    """
    if num_clients > MAX_SUPERNODES:
        raise ConfigError(
            f"the compose file supports up to {MAX_SUPERNODES} SuperNodes (the image's "
            "per-node mount points, docker/Dockerfile); start more SuperNodes elsewhere"
        )
    clients = _var("FEDPRIV_NUM_CLIENTS", num_clients)
    mac_uploads, roster_uploads = min_uploads(num_clients)
    superlink = f"superlink:{topology.SUPERLINK_PORT}"
    ca_ro = ca_ro_volume()
    nodes = [supernode_name(i) for i in range(num_clients)]
    tls_folders = [f"{CA_VOLUME}:{PROVISION}/certs/{CA_FOLDER}"]
    tls_folders.append(f"{SUPERLINK_TLS_VOLUME}:{PROVISION}/certs/{SUPERLINK_FOLDER}")
    tls_folders += [f"{node_tls_volume(i)}:{PROVISION}/certs/{n}" for i, n in enumerate(nodes)]
    services: dict[str, Any] = {
        # One-shot provisioning: TLS material, then the CKKS key set and the nodes' signing
        # identities (the key holder's job).
        "certs": _service(
            [
                "fedpriv",
                "deploy",
                "certs",
                "--exist-ok",
                "--out",
                f"{PROVISION}/certs",
                "--hosts",
                *DEFAULT_HOSTS,
                "--supernodes",
                *nodes,
            ],  # fmt: skip
            tls_folders,
            build={
                "context": ".",
                "dockerfile": "docker/Dockerfile",
                "args": {"BASE_IMAGE": _var("FEDPRIV_BASE_IMAGE", DEFAULTS["FEDPRIV_BASE_IMAGE"])},
            },
            pull_policy="build",
        ),
        "keys": _service(
            [
                "fedpriv",
                "keys",
                "new",
                "--exist-ok",
                "--out",
                f"{PROVISION}/keys/client",
                "--server-out",
                f"{PROVISION}/keys/server",
                "--preset",
                _var("FEDPRIV_CKKS_PRESET", DEFAULTS["FEDPRIV_CKKS_PRESET"]),
                "--min-uploads",
                str(mac_uploads),
            ],  # fmt: skip
            [
                f"{CLIENT_KEYS_VOLUME}:{PROVISION}/keys/client",
                f"{SERVER_KEYS_VOLUME}:{PROVISION}/keys/server",
            ],
            depends_on=_done("certs"),
        ),
        # Each node's signing key into its own volume; the roster beside the clients' keys.
        "identities": _service(
            [
                "fedpriv",
                "deploy",
                "identities",
                "--exist-ok",
                "--out",
                IDENTITIES,
                "--roster-out",
                f"{PROVISION}/keys/client",
                "--nodes",
                str(num_clients),
                "--min-uploads",
                str(roster_uploads),
            ],  # fmt: skip
            [
                f"{CLIENT_KEYS_VOLUME}:{PROVISION}/keys/client",
                *(f"{node_identity_volume(i)}:{IDENTITIES}/node-{i}" for i in range(num_clients)),
            ],
            depends_on=_done("keys"),
        ),
        "superlink": _service(
            [
                "flower-superlink",
                *topology.superlink_args(
                    CERTS, "0.0.0.0", topology.SUPERLINK_PORT, "/state/superlink.db", node_auth
                ),
            ],
            [ca_ro, f"{SUPERLINK_TLS_VOLUME}:{TLS_DIR}:ro", "superlink-state:/state"],
            ports=[f"{topology.SUPERLINK_PORT}:{topology.SUPERLINK_PORT}"],
            depends_on=_done("certs"),
        ),
        # The ServerApp runs here: it holds the parameters-only context and writes the run.
        "superexec-serverapp": _service(
            ["flower-superexec", *topology.superexec_args(CERTS, superlink)],
            [ca_ro, f"{SERVER_KEYS_VOLUME}:{KEY_DIR}:ro", f"runs:{RUNS}"],
            depends_on={"superlink": {"condition": "service_started"}, **_done("keys")},
        ),
    }
    if node_auth:
        services.update(_node_auth_services(num_clients, superlink))
    for partition in range(num_clients):
        node = supernode_name(partition)
        address = f"{node}:{topology.SUPERNODE_PORT}"
        volumes = [ca_ro, f"{node_tls_volume(partition)}:{TLS_DIR}:ro"]
        depends: dict[str, Any] = {"superlink": {"condition": "service_started"}}
        if node_auth:
            volumes.append(f"{node_key_volume(partition)}:{NODE_KEY_DIR}:ro")
            depends.update(_done("register"))
        services[node] = _service(
            [
                topology.SUPERNODE_BINARY,
                *topology.supernode_args(
                    CERTS,
                    superlink,
                    "0.0.0.0",
                    topology.SUPERNODE_PORT,
                    topology.node_config(partition, num_clients, KEY_DIR),
                    f"{NODE_KEY_DIR}/auth_key" if node_auth else None,
                ),
            ],
            volumes,
            depends_on=depends,
        )
        # The ClientApp runs here: only client-side services see the secret-key context, and
        # only this one its node's signing key (over the key set, in its identities/).
        services[f"superexec-clientapp-{partition}"] = _service(
            [topology.CLIENTAPP_SUPEREXEC_BINARY, *topology.superexec_args(CERTS, address)],
            [
                ca_ro,
                f"{CLIENT_KEYS_VOLUME}:{KEY_DIR}:ro",
                f"{node_identity_volume(partition)}:{NODE_IDENTITY_DIR}:ro",
            ],
            environment=dict(topology.SUPEREXEC_ENV),
            depends_on={node: {"condition": "service_started"}, **_done("keys", "identities")},
        )
    services["submit"] = _service(
        [
            "fedpriv",
            "deploy",
            "submit",
            "--superlink",
            superlink,
            "--ca",
            CERTS.ca,
            "--app",
            "/app",
            "--logs",
            f"{RUNS}/logs-{_var('FEDPRIV_RUN_NAME', DEFAULTS['FEDPRIV_RUN_NAME'])}",
            "--run-config",
            _run_config(clients),
        ],  # fmt: skip
        [ca_ro, f"runs:{RUNS}"],
        depends_on={"superexec-serverapp": {"condition": "service_started"}},
        profiles=["run"],
    )
    services["release"] = _service(
        [
            "fedpriv",
            "release",
            "--run",
            f"{RUNS}/{_var('FEDPRIV_RUN_NAME', DEFAULTS['FEDPRIV_RUN_NAME'])}",
            "--keys",
            KEY_DIR,
        ],  # fmt: skip
        # Writable: the key holder notes each run it released (one aggregate per run).
        [f"{CLIENT_KEYS_VOLUME}:{KEY_DIR}", f"runs:{RUNS}"],
        profiles=["release"],
    )
    volumes = [CA_VOLUME, SUPERLINK_TLS_VOLUME, *(node_tls_volume(i) for i in range(num_clients))]
    volumes += [CLIENT_KEYS_VOLUME, SERVER_KEYS_VOLUME, "runs", "superlink-state"]
    volumes += [node_identity_volume(i) for i in range(num_clients)]
    if node_auth:
        volumes += [node_key_volume(i) for i in range(num_clients)]
    return {"name": "fedpriv", "services": services, "volumes": {v: {} for v in volumes}}


def _run_config(clients: str) -> str:
    """The run's ``--run-config``, from the environment of ``docker compose run submit``."""
    threshold = "FEDPRIV_THRESHOLD_AUTHENTICATED"
    return " ".join(
        [
            f"aggregation='{_var('FEDPRIV_AGGREGATION', DEFAULTS['FEDPRIV_AGGREGATION'])}'",
            f"num-clients={clients}",
            f"min-available-clients={_var('FEDPRIV_MIN_CLIENTS', clients)}",
            f"num-server-rounds={_var('FEDPRIV_ROUNDS', DEFAULTS['FEDPRIV_ROUNDS'])}",
            f"dataset='{_var('FEDPRIV_DATASET', DEFAULTS['FEDPRIV_DATASET'])}'",
            f"model='{_var('FEDPRIV_MODEL', DEFAULTS['FEDPRIV_MODEL'])}'",
            f"ckks-preset='{_var('FEDPRIV_CKKS_PRESET', DEFAULTS['FEDPRIV_CKKS_PRESET'])}'",
            "ckks-authenticated="
            f"{_var('FEDPRIV_CKKS_AUTHENTICATED', DEFAULTS['FEDPRIV_CKKS_AUTHENTICATED'])}",
            "model-consistency="
            f"{_var('FEDPRIV_MODEL_CONSISTENCY', DEFAULTS['FEDPRIV_MODEL_CONSISTENCY'])}",
            f"threshold-authenticated={_var(threshold, DEFAULTS[threshold])}",
            f"key-dir='{KEY_DIR}'",
            f"out-dir='{RUNS}/{_var('FEDPRIV_RUN_NAME', DEFAULTS['FEDPRIV_RUN_NAME'])}'",
        ]
    )


HEADER = """\
# Generated by `fedpriv deploy compose {command}`; edit that, not this file.
# The fedpriv topology on Flower's Deployment Engine, TLS on every connection:
#   certs, keys            one-shot provisioning (TLS material; CKKS key set, split by side)
#   identities             one-shot: each node's signing key (its own volume), the roster
#   superlink              Fleet + Control + ServerApp Runtime API on port {port}
#   superexec-serverapp    runs the ServerApp: parameters-only context, writes the run
#   supernode-i            one per client (node config: partition, key-dir)
#   superexec-clientapp-i  runs that client's ClientApp: the only holders of the secret key,
#                          and of node i's signing key (/keys/identities)
#   submit   (profile run)      `flwr run` of this app against the SuperLink
#   release  (profile release)  the key holder decrypts the final model
#   node-keys, register    with --node-auth: each node's key, registered before the nodes start
# Environment: {variables}.
# See README, "Deploying".
"""


def render(num_clients: int = 3, node_auth: bool = False) -> str:
    """The text of ``docker-compose.yml`` for ``num_clients`` SuperNodes."""
    header = HEADER.format(
        command=f"--clients {num_clients}" + (" --node-auth" if node_auth else ""),
        port=topology.SUPERLINK_PORT,
        variables=", ".join(ENVIRONMENT),
    )
    body = yaml.safe_dump(compose_file(num_clients, node_auth), sort_keys=False, width=100)
    return header + body
