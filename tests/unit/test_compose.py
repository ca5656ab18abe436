"""The compose file: generated from the topology, each key mounted only where it is used."""

import json
from pathlib import Path

import pytest
import yaml

from fedpriv.deploy import compose
from fedpriv.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
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
    # Through mount points of its own, so that no volume receives the image's other folders.
    keys = services["keys"]
    assert _mounts(keys) == {
        f"{compose.PROVISION}/keys/client": compose.CLIENT_KEYS_VOLUME,
        f"{compose.PROVISION}/keys/server": compose.SERVER_KEYS_VOLUME,
    }


def test_each_tls_key_is_mounted_only_into_the_service_that_presents_it(compose_doc):
    services = compose_doc["services"]
    holders: dict[str, set[str]] = {}
    for name, service in services.items():
        for source in _mounts(service).values():
            holders.setdefault(source, set()).add(name)
    assert holders[compose.SUPERLINK_TLS_VOLUME] == {"certs", "superlink"}
    for i in range(3):
        assert holders[compose.node_tls_volume(i)] == {"certs", f"supernode-{i}"}
        assert _mounts(services[f"supernode-{i}"])[compose.TLS_DIR] == compose.node_tls_volume(i)
    # Every running service verifies against the CA certificate, read-only.
    for name, service in services.items():
        if name not in ("certs", "keys", "release"):
            assert compose.ca_ro_volume() in service["volumes"], name
    assert _mounts(services["superlink"])[compose.TLS_DIR] == compose.SUPERLINK_TLS_VOLUME


def test_up_before_build_builds_instead_of_pulling(compose_doc):
    services = compose_doc["services"]
    assert services["certs"]["pull_policy"] == "build" and "build" in services["certs"]
    others = {name: s["pull_policy"] for name, s in services.items() if name != "certs"}
    assert set(others.values()) == {"never"}


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
    assert "supernode-4" in doc["services"]["certs"]["command"]  # it gets a certificate
    with pytest.raises(ConfigError, match="up to 64"):
        compose.compose_file(65)


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
