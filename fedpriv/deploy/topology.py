"""The Deployment Engine topology: the flags of every process, shared by compose and loopback."""

from __future__ import annotations

from dataclasses import dataclass

# One SuperLink (Fleet, Control and the ServerApp's Runtime API on one port), one SuperExec
# running the ServerApp, and per client a SuperNode with its own ClientApp SuperExec. The
# loopback launcher and ``docker-compose.yml`` both build their command lines here, so the two
# cannot drift apart (a test compares them).

SUPERLINK_PORT = 9093
SUPERNODE_PORT = 9094


@dataclass(frozen=True)
class TlsFiles:
    """Paths of the TLS material as a process sees them.

    Attributes
    ----------
    ca : str
        The CA certificate every client side verifies against.
    cert : str
        The server certificate (SuperLink, and each SuperNode's Runtime API).
    key : str
        The server certificate's private key.

    """

    ca: str
    cert: str
    key: str

    def serving(self) -> list[str]:
        """Flags of a process that serves TLS."""
        return [
            "--ssl-ca-certfile", self.ca, "--ssl-certfile", self.cert, "--ssl-keyfile", self.key,
        ]  # fmt: skip

    def dialing(self) -> list[str]:
        """Flags of a process that connects over TLS."""
        return ["--root-certificates", self.ca]


def _dialing(tls: TlsFiles | None) -> list[str]:
    return tls.dialing() if tls else ["--insecure"]


# The loopback deployment keeps the SuperLink's state in memory (Flower's default): it lives
# as long as the run, and an SQLite file costs about a second a round on 2 cores (measured).
# Compose keeps a file on a volume, so that a restarted SuperLink finds its state.
IN_MEMORY_DATABASE = ":flwr-in-memory:"


def superlink_args(
    tls: TlsFiles | None, host: str, port: int, database: str, node_auth: bool = False
) -> list[str]:
    """``flower-superlink`` flags: apps run in separate SuperExec processes."""
    args = tls.serving() if tls else ["--insecure"]
    args += ["--isolation", "process", "--host", host, "--port", str(port)]
    args += ["--database", database]
    if node_auth:
        # SuperNodes must be registered (`flwr supernode register`) before they connect.
        args.append("--enable-supernode-auth")
    return args


def supernode_args(
    tls: TlsFiles | None,
    superlink: str,
    host: str,
    port: int,
    node_config: str,
    auth_key: str | None = None,
) -> list[str]:
    """``flower-supernode`` flags; its own Runtime API serves TLS too when ``tls`` is set."""
    args = _dialing(tls) + ["--superlink", superlink, "--isolation", "process"]
    args += ["--host", host, "--port", str(port)]
    if tls:
        args += tls.serving()
    args += ["--node-config", node_config]
    if auth_key:
        args += ["--auth-supernode-private-key", auth_key]
    return args


# Flower's SuperNode, started through fedpriv's entry point (``fedpriv-supernode``), which
# caps the SuperNode's idle poll of the SuperLink (3 s in Flower 1.42) at this many seconds:
# :func:`fedpriv.flower_internals.run_supernode`.
SUPERNODE_BINARY = "fedpriv-supernode"
SUPERNODE_POLL_SECONDS = 0.2
# The SuperExec that runs a node's ClientApps, started through fedpriv's entry point
# (``fedpriv-superexec``), which forks each ClientApp from a process that has imported torch
# and Flower already instead of starting a fresh one per message:
# :class:`fedpriv.flower_internals.ForkingExecutor`. The ServerApp's SuperExec is Flower's own (one
# process per run).
CLIENTAPP_SUPEREXEC_BINARY = "fedpriv-superexec"
# A SuperExec polls its Runtime API for a task every second by default; every message of a
# deployment waits on a node's SuperExec's poll (a round: training and evaluation), so those
# poll faster. The ServerApp's SuperExec keeps Flower's second: it has one task a run, and
# its polls would cost the SuperLink about 30 requests a round (measured).
SUPEREXEC_ENV = {"FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.2"}


def superexec_args(tls: TlsFiles | None, runtime_api: str) -> list[str]:
    """``flower-superexec`` flags: it runs the apps of the SuperLink/SuperNode it polls."""
    return _dialing(tls) + ["--runtime-api-address", runtime_api]


def node_config(partition_id: int, num_partitions: int | str, key_dir: str | None) -> str:
    """A SuperNode's ``--node-config``: its partition and, under ckks, its own key directory."""
    config = f"partition-id={partition_id} num-partitions={num_partitions}"
    if key_dir:
        config += f" key-dir='{key_dir}'"
    return config


def connection_toml(name: str, address: str, ca: str | None) -> str:
    """The ``$FLWR_HOME/config.toml`` the ``flwr`` CLI reads to reach the SuperLink."""
    lines = ["[superlink]", f'default = "{name}"', "", f"[superlink.{name}]"]
    lines.append(f'address = "{address}"')
    lines.append(f'root-certificates = "{ca}"' if ca else "insecure = true")
    return "\n".join(lines) + "\n"
