"""The Deployment Engine topology: compose file checks and the loopback deployment."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import leaks, parameter_fragments, pids_with_cmdline, secret_fragments
from flwr.common.config import parse_config_args

from fedpriv.config import RunConfig
from fedpriv.deploy import compose, topology
from fedpriv.deploy.credentials import make_certificates
from fedpriv.deploy.flwr_cli import run_config_string
from fedpriv.deploy.local import LocalDeployment, deploy_local
from fedpriv.deploy.processes import group_alive
from fedpriv.errors import ConfigError, DeploymentError

ROOT = Path(__file__).resolve().parents[1]
SERVER_SIDE = ("superlink", "superexec-serverapp", "submit")


@pytest.fixture(scope="module")
def compose_doc():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _flags(argv: list[str]) -> list[str]:
    return [a for a in argv if a.startswith("--")]


def _mounts(service: dict) -> dict[str, str]:
    return {v.split(":")[1]: v.split(":")[0] for v in service.get("volumes", [])}


def test_committed_compose_file_is_the_generated_one():
    assert (ROOT / "docker-compose.yml").read_text() == compose.render(3)


def test_every_service_has_an_image_built_from_the_project(compose_doc):
    services = compose_doc["services"]
    assert {s["image"] for s in services.values()} == {compose.IMAGE}
    build = services["certs"]["build"]
    assert (ROOT / build["context"] / build["dockerfile"]).is_file()
    dockerfile = (ROOT / build["dockerfile"]).read_text()
    assert "pip install torch==2.13.0" in dockerfile and "pip install ." in dockerfile
    expected = {"certs", "keys", "superlink", "superexec-serverapp", "submit", "release"}
    expected |= {f"supernode-{i}" for i in range(3)}
    expected |= {f"superexec-clientapp-{i}" for i in range(3)}
    assert set(services) == expected


def test_superlink_port_and_tls(compose_doc):
    superlink = compose_doc["services"]["superlink"]
    assert superlink["ports"] == ["9093:9093"]
    argv = superlink["command"]
    assert argv[argv.index("--port") + 1] == "9093"
    assert argv[argv.index("--ssl-certfile") + 1] == compose.CERTS.cert  # it serves TLS
    assert argv[argv.index("--ssl-keyfile") + 1] == compose.CERTS.key
    assert "--insecure" not in json.dumps(compose_doc)  # TLS on every connection
    for name, service in compose_doc["services"].items():
        if name.startswith(("supernode-", "superexec-")):
            assert "--root-certificates" in service["command"], name


def test_secret_key_reaches_client_side_services_only(compose_doc):
    services = compose_doc["services"]
    for name in SERVER_SIDE:
        mounted = set(_mounts(services[name]))
        sources = set(_mounts(services[name]).values())
        assert compose.CLIENT_KEYS_VOLUME not in sources, name
        assert not any("client" in m for m in mounted), name
    assert _mounts(services["superexec-serverapp"])[compose.KEY_DIR] == compose.SERVER_KEYS_VOLUME
    for i in range(3):
        client = services[f"superexec-clientapp-{i}"]
        assert _mounts(client)[compose.KEY_DIR] == compose.CLIENT_KEYS_VOLUME
        # Read-only, and the node's key-dir points at it.
        assert f"{compose.CLIENT_KEYS_VOLUME}:{compose.KEY_DIR}:ro" in client["volumes"]
        node_config = services[f"supernode-{i}"]["command"]
        assert f"key-dir='{compose.KEY_DIR}'" in node_config[node_config.index("--node-config") + 1]
    # The key holder's one-shot service writes each share into its own volume.
    keys = services["keys"]
    assert _mounts(keys) == {
        f"{compose.KEY_DIR}/client": compose.CLIENT_KEYS_VOLUME,
        f"{compose.KEY_DIR}/server": compose.SERVER_KEYS_VOLUME,
    }


def test_environment_variables_drive_the_run(compose_doc):
    submit = compose_doc["services"]["submit"]["command"]
    assert submit[:3] == ["fedpriv", "deploy", "submit"]  # waits for the run's final status
    run_config = submit[submit.index("--run-config") + 1]
    for variable in ("FEDPRIV_NUM_CLIENTS", "FEDPRIV_AGGREGATION", "FEDPRIV_ROUNDS"):
        assert f"${{{variable}:-" in run_config
    # Partitions are fixed by the file: each node keeps its share whoever else runs.
    node_config = compose_doc["services"]["supernode-2"]["command"][-1]
    assert "partition-id=2 num-partitions=3" in node_config


def test_compose_for_other_client_counts():
    doc = compose.compose_file(5)
    assert sum(name.startswith("supernode-") for name in doc["services"]) == 5
    assert "supernode-4" in doc["services"]["certs"]["command"]  # in the certificate's names


def test_certificates_verify_and_key_is_private(tmp_path):
    from cryptography import x509

    paths = make_certificates(tmp_path, ("superlink", "127.0.0.1"))
    assert oct(os.stat(paths["key"]).st_mode & 0o777) == "0o600"
    cert = x509.load_pem_x509_certificate(paths["cert"].read_bytes())
    ca = x509.load_pem_x509_certificate(paths["ca"].read_bytes())
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "superlink" in names.get_values_for_type(x509.DNSName)


def test_node_auth_needs_tls(tmp_path):
    with pytest.raises(ConfigError, match="needs TLS"):
        LocalDeployment(RunConfig(), tmp_path, tls=False, node_auth=True)


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

    # Nothing secret in any process's log: no key bytes, no plaintext parameter value.
    logs = "".join(path.read_text(errors="replace") for path in (out / "logs").glob("*.log"))
    assert "[ROUND 2/2]" in (out / "logs" / "serverapp.log").read_text()
    assert leaks(logs, secret_fragments(out / "keys" / "client" / "client.ctx")) == []
    assert leaks(logs, parameter_fragments(run_dir / "model.pt")) == []


@pytest.mark.slow
def test_failed_deployment_stops_every_process(tmp_path):
    config = RunConfig(aggregation="plaintext", num_clients=2, num_server_rounds=50)
    out = tmp_path / "deployment"
    with pytest.raises(DeploymentError, match="after 1s"):
        deploy_local(LocalDeployment(config, out, tls=False, timeout=1.0))
    processes = json.loads((out / "logs" / "processes.json").read_text())
    assert processes and not [name for name, p in processes.items() if group_alive(p["pid"])]
    assert pids_with_cmdline(str(out)) == []


def test_run_config_string_round_trips():
    config = RunConfig(aggregation="ckks", key_dir="/k", record_server_view=False)
    parsed = parse_config_args([run_config_string(config)])
    assert RunConfig.from_flower(parsed) == config


def test_connection_toml_names_tls_or_insecure():
    assert "insecure = true" in topology.connection_toml("deploy", "127.0.0.1:1", None)
    tls = topology.connection_toml("deploy", "superlink:9093", "/certs/ca.crt")
    assert 'root-certificates = "/certs/ca.crt"' in tls and "insecure" not in tls


def test_existing_certificates_are_kept_only_for_the_same_names(tmp_path, capsys):
    from fedpriv.cli import main

    out = tmp_path / "certs"
    assert main(["deploy", "certs", "--out", str(out), "--hosts", "superlink"]) == 0
    kept = ["deploy", "certs", "--exist-ok", "--out", str(out), "--hosts", "superlink"]
    assert main(kept) == 0
    assert main([*kept, "supernode-9"]) == 2
    assert "not valid for supernode-9" in capsys.readouterr().err


def test_submit_needs_tls_or_an_explicit_insecure(capsys):
    from fedpriv.cli import main

    assert main(["deploy", "submit", "--superlink", "127.0.0.1:1"]) == 2
    assert "--ca CA_CERT for TLS, or --insecure" in capsys.readouterr().err


def test_node_auth_compose_gives_each_node_only_its_own_key():
    doc = compose.compose_file(3, node_auth=True)
    services = doc["services"]
    assert "--enable-supernode-auth" in services["superlink"]["command"]
    for i in range(3):
        node = services[f"supernode-{i}"]
        argv = node["command"]
        key = argv[argv.index("--auth-supernode-private-key") + 1]
        assert key == f"{compose.NODE_KEY_DIR}/auth_key"
        assert _mounts(node)[compose.NODE_KEY_DIR] == f"node-key-{i}"
        assert f"node-key-{i}:{compose.NODE_KEY_DIR}:ro" in node["volumes"]
        assert node["depends_on"]["register"] == {"condition": "service_completed_successfully"}
        assert not any(f"node-key-{j}" in v for v in node["volumes"] for j in range(3) if j != i)
    for name in SERVER_SIDE:
        assert not any("node-key" in v for v in services[name].get("volumes", [])), name
    assert services["register"]["depends_on"]["node-keys"]["condition"].startswith("service_")
    with pytest.raises(ConfigError, match="up to 64"):
        compose.compose_file(65, node_auth=True)


def test_node_keys_are_private_and_kept(tmp_path, capsys):
    from fedpriv.cli import main

    assert main(["deploy", "node-keys", "--out", str(tmp_path), "--nodes", "2"]) == 0
    key = tmp_path / "node-1" / "auth_key"
    assert oct(os.stat(key).st_mode & 0o777) == "0o600"
    assert (tmp_path / "node-1" / "auth_key.pub").read_text().startswith("ecdsa-sha2-nistp384 ")
    before = key.read_bytes()
    assert main(["deploy", "node-keys", "--out", str(tmp_path), "--nodes", "2"]) == 2
    assert main(["deploy", "node-keys", "--exist-ok", "--out", str(tmp_path), "--nodes", "2"]) == 0
    assert key.read_bytes() == before


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
