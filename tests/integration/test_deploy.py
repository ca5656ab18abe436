"""The Deployment Engine on loopback: real processes, TLS, node authentication (slow)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support import leaks, parameter_fragments, pids_with_cmdline, secret_fragments

from fedpriv.config import RunConfig
from fedpriv.deploy import compose, topology
from fedpriv.deploy.cpu import RoundsCpu
from fedpriv.deploy.credentials import make_certificates
from fedpriv.deploy.local import CPU_FILE, LocalDeployment, deploy_local
from fedpriv.deploy.processes import group_alive
from fedpriv.errors import DeploymentError

ROOT = Path(__file__).resolve().parents[2]
SERVER_SIDE = ("superlink", "superexec-serverapp", "submit")


@pytest.fixture(scope="module")
def compose_doc():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _flags(argv: list[str]) -> list[str]:
    return [a for a in argv if a.startswith("--")]


def _compose_flags_by_role(doc) -> dict[str, list[str]]:
    services = doc["services"]
    return {
        "superlink": _flags(services["superlink"]["command"]),
        "supernode": _flags(services["supernode-0"]["command"]),
        "superexec": _flags(services["superexec-clientapp-0"]["command"]),
    }


def _launcher_flags_by_role(processes: dict) -> dict[str, list[str]]:
    return {
        "superlink": _flags(processes["superlink"]["argv"]),
        "supernode": _flags(processes["supernode-0"]["argv"]),
        "superexec": _flags(processes["superexec-node-0"]["argv"]),
    }


@pytest.mark.slow
def test_loopback_deployment_ckks_over_tls_matches_simulation(tmp_path, compose_doc):
    from fedpriv.simulation import run_simulation

    config = RunConfig(aggregation="ckks", num_clients=3, num_server_rounds=2)
    out = tmp_path / "deployment"
    run_dir = deploy_local(LocalDeployment(config, out, tls=True, node_auth=True))

    # Every process it started is gone, by PID (each is its own process group).
    processes = json.loads((out / "logs" / "processes.json").read_text())
    assert len(processes) == 2 + 2 * 3
    assert not [name for name, p in processes.items() if group_alive(p["pid"])]
    assert pids_with_cmdline(str(out)) == []

    # The launcher ran the compose file's flags (with TLS and node authentication on).
    launched = _launcher_flags_by_role(processes)
    assert launched == _compose_flags_by_role(compose.compose_file(3, node_auth=True))
    without_auth = _compose_flags_by_role(compose_doc)
    assert launched["superlink"] == without_auth["superlink"] + ["--enable-supernode-auth"]

    # The server side held parameters only; the released run matches the simulation.
    assert sorted(p.name for p in (out / "keys" / "server").iterdir()) == [
        "preset.json",
        "server.ctx",
    ]
    history = json.loads((run_dir / "history.json").read_text())
    assert [len(r["clients"]) for r in history["rounds"]] == [3, 3]
    simulated = run_simulation(config.replace(out_dir=str(tmp_path / "simulation")))
    reference = json.loads((simulated / "history.json").read_text())
    for deployed, simulated_round in zip(history["rounds"], reference["rounds"], strict=True):
        assert abs(deployed["accuracy"] - simulated_round["accuracy"]) <= 0.01
    assert (run_dir / "model.pt").exists()

    # Where round 2's CPU went, by role: every role of the deployment did some of it.
    cpu = RoundsCpu.from_json(json.loads((out / "logs" / CPU_FILE).read_text()))
    assert (cpu.first_round, cpu.last_round) == (1, 2)
    assert set(cpu.cpu_seconds) == {"SuperLink", "SuperNodes", "ClientApps", "ServerApp"}
    assert all(seconds > 0 for seconds in cpu.cpu_seconds.values())
    assert sum(cpu.cpu_seconds.values()) <= cpu.machine_cpu_seconds + 1.0

    # Nothing secret in any process's log: no key bytes, no plaintext parameter value.
    logs = "".join(path.read_text(errors="replace") for path in (out / "logs").glob("*.log"))
    assert "[ROUND 2/2]" in (out / "logs" / "serverapp.log").read_text()
    assert leaks(logs, secret_fragments(out / "keys" / "client" / "client.ctx")) == []
    assert leaks(logs, parameter_fragments(run_dir / "model.pt")) == []


@pytest.mark.slow
def test_loopback_deployment_of_ckks_threshold(tmp_path):
    """The key setup and each round's decryption run through real SuperNodes: the parties'
    secrets live in Flower's node state between messages (a fresh process per message)."""
    config = RunConfig(aggregation="ckks-threshold", num_clients=3, num_server_rounds=2)
    out = tmp_path / "deployment"
    run_dir = deploy_local(LocalDeployment(config, out, tls=False))
    history = json.loads((run_dir / "history.json").read_text())
    assert [len(r["clients"]) for r in history["rounds"]] == [3, 3]
    assert all(r["accuracy"] > 0.5 and "skipped" not in r for r in history["rounds"])
    setup = json.loads((run_dir / "threshold.json").read_text())
    assert setup["threshold"] == 2 and len(setup["parties"]) == 3
    processes = json.loads((out / "logs" / "processes.json").read_text())
    assert not [name for name, p in processes.items() if group_alive(p["pid"])]


@pytest.mark.slow
def test_failed_deployment_stops_every_process(tmp_path):
    config = RunConfig(aggregation="plaintext", num_clients=2, num_server_rounds=50)
    out = tmp_path / "deployment"
    with pytest.raises(DeploymentError, match="after 1s"):
        deploy_local(LocalDeployment(config, out, tls=False, timeout=1.0))
    processes = json.loads((out / "logs" / "processes.json").read_text())
    assert processes and not [name for name, p in processes.items() if group_alive(p["pid"])]
    assert pids_with_cmdline(str(out)) == []


@pytest.mark.slow
def test_register_is_idempotent_against_a_real_superlink(tmp_path, capsys):
    from fedpriv.cli import main
    from fedpriv.deploy.flwr_cli import connect
    from fedpriv.deploy.processes import ProcessGroups, free_port

    certs = make_certificates(tmp_path / "certs")
    tls = topology.TlsFiles(str(certs["ca"]), str(certs["cert"]), str(certs["key"]))
    port = free_port()
    (tmp_path / "logs").mkdir()
    home = tmp_path / "home"
    processes = ProcessGroups(tmp_path / "logs")
    argv = topology.superlink_args(tls, "127.0.0.1", port, str(tmp_path / "state.db"), True)
    superlink = str(Path(sys.executable).with_name("flower-superlink"))
    try:
        env = connect(home, f"127.0.0.1:{port}", str(certs["ca"]))  # for listing the nodes
        processes.start("superlink", [superlink, *argv], tmp_path, env)
        assert main(["deploy", "node-keys", "--out", str(tmp_path / "keys"), "--nodes", "2"]) == 0
        register = ["deploy", "register", "--superlink", f"127.0.0.1:{port}"]
        register += ["--ca", str(certs["ca"]), "--keys", str(tmp_path / "keys")]
        assert main(register) == 0
        assert main(register) == 0  # a second `docker compose up` registers again: fine
        listed = subprocess.run(
            [str(Path(sys.executable).with_name("flwr")), "supernode", "list", "deploy",
             "--format", "json"],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        nodes = json.loads(listed.stdout)["nodes"]
        assert [n["status"] for n in nodes] == ["registered", "registered"]
    finally:
        processes.stop()
    assert not group_alive(processes.started[0][1].pid)
