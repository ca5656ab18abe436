"""The compose file: generated from the topology, each key mounted only where it is used."""

import json
import shutil
import stat
from pathlib import Path

import pytest
import yaml

from fedpriv.cli import main
from fedpriv.crypto.presets import get_preset
from fedpriv.crypto.signing import IDENTITIES_DIR, ROSTER_FILE, load_identity, load_roster
from fedpriv.deploy import compose
from fedpriv.deploy.credentials import make_node_identities
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
    expected = {"certs", "keys", "identities", "superlink", "superexec-serverapp"}
    expected |= {"submit", "release"}
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
        if name not in ("certs", "keys", "identities", "release"):
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


def test_each_signing_key_reaches_only_its_own_nodes_clientapp(compose_doc):
    services = compose_doc["services"]
    holders: dict[str, set[str]] = {}
    for name, service in services.items():
        for source in _mounts(service).values():
            holders.setdefault(source, set()).add(name)
    for i in range(3):
        volume = compose.node_identity_volume(i)
        # Written by the one-shot service, read by node i's ClientApp SuperExec only (not
        # even by its SuperNode, which never reads key-dir).
        assert holders[volume] == {"identities", f"superexec-clientapp-{i}"}
        client = services[f"superexec-clientapp-{i}"]
        assert f"{volume}:{compose.KEY_DIR}/{IDENTITIES_DIR}:ro" in client["volumes"]
        # Over the key set: the node's key-dir (/keys) holds identities/party-i.key.
        assert _mounts(client)[compose.KEY_DIR] == compose.CLIENT_KEYS_VOLUME
        assert client["depends_on"]["identities"] == {"condition": "service_completed_successfully"}
        others = {compose.node_identity_volume(j) for j in range(3) if j != i}
        assert not others & set(_mounts(client).values())
    for name in SERVER_SIDE:
        assert not any("identity" in v for v in _mounts(services[name]).values()), name
    # The service writes each key into its own volume, and the roster (public) into the
    # clients' key set, which the server side never mounts.
    provision = services["identities"]
    assert _mounts(provision) == {
        f"{compose.PROVISION}/keys/client": compose.CLIENT_KEYS_VOLUME,
        **{f"{compose.IDENTITIES}/node-{i}": compose.node_identity_volume(i) for i in range(3)},
    }
    argv = provision["command"]
    assert argv[:3] == ["fedpriv", "deploy", "identities"] and "--exist-ok" in argv
    assert argv[argv.index("--roster-out") + 1] == f"{compose.PROVISION}/keys/client"
    assert argv[argv.index("--nodes") + 1] == "3"
    assert provision["depends_on"] == {"keys": {"condition": "service_completed_successfully"}}


def test_hardened_protocols_are_the_defaults(compose_doc):
    submit = compose_doc["services"]["submit"]["command"]
    run_config = submit[submit.index("--run-config") + 1]
    for key, variable in [
        ("ckks-authenticated", "FEDPRIV_CKKS_AUTHENTICATED"),
        ("model-consistency", "FEDPRIV_MODEL_CONSISTENCY"),
        ("threshold-authenticated", "FEDPRIV_THRESHOLD_AUTHENTICATED"),
    ]:
        assert f"{key}=${{{variable}:-true}}" in run_config  # on, and a variable turns it off
        assert variable in compose.ENVIRONMENT
    # The MAC key of authenticated ckks exists for packed presets only.
    preset = compose.DEFAULTS["FEDPRIV_CKKS_PRESET"]
    assert get_preset(preset).backend == "packed"
    keys = compose_doc["services"]["keys"]["command"]
    assert f"${{FEDPRIV_CKKS_PRESET:-{preset}}}" in keys and "--unauthenticated" not in keys
    assert keys[keys.index("--min-uploads") + 1] == "2"
    # The key holder notes each release in its key set: it mounts it writable.
    release = compose_doc["services"]["release"]
    assert f"{compose.CLIENT_KEYS_VOLUME}:{compose.KEY_DIR}" in release["volumes"]


def test_min_uploads_is_what_loopback_provisions_for_every_supernode():
    # (MAC key, roster): auth-min-uploads; the roster also at least ckks-threshold's t.
    assert compose.min_uploads(1) == (1, 1)
    assert compose.min_uploads(3) == (2, 2)
    assert compose.min_uploads(5) == (2, 4)
    roster = compose.compose_file(5)["services"]["identities"]["command"]
    assert roster[roster.index("--min-uploads") + 1] == "4"


def _mounted_key_dir(tmp_path: Path, roster_dir: Path, node_folder: Path) -> Path:
    """What a node's ClientApp SuperExec sees at /keys: the key set, its own key nested."""
    key_dir = tmp_path / "mounted"
    shutil.copytree(roster_dir, key_dir)
    assert not any((key_dir / IDENTITIES_DIR).iterdir())  # the mount point, empty
    shutil.rmtree(key_dir / IDENTITIES_DIR)
    shutil.copytree(node_folder, key_dir / IDENTITIES_DIR)
    return key_dir


def test_identities_each_node_folder_holds_its_own_key_only(tmp_path):
    nodes, roster_dir = tmp_path / "nodes", tmp_path / "client"
    roster = make_node_identities(nodes, roster_dir, 3, 2)
    assert sorted(roster.keys) == [0, 1, 2] and roster.min_uploads == 2
    assert load_roster(roster_dir) == roster
    assert stat.S_IMODE((roster_dir / ROSTER_FILE).stat().st_mode) == 0o644  # public
    for i in range(3):
        files = list((nodes / f"node-{i}").iterdir())
        assert [f.name for f in files] == [f"party-{i}.key"]
        assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
        # Mounted as the compose file mounts it, the node signs under the roster's key.
        key_dir = _mounted_key_dir(tmp_path / f"n{i}", roster_dir, nodes / f"node-{i}")
        signature = load_identity(key_dir, i).sign(b"statement")
        assert load_roster(key_dir).verify(i, signature, b"statement")
        assert not load_roster(key_dir).verify((i + 1) % 3, signature, b"statement")


def test_identities_are_kept_on_a_second_up_and_refused_for_other_nodes(tmp_path, capsys):
    nodes, roster_dir = tmp_path / "nodes", tmp_path / "client"
    argv = ["deploy", "identities", "--out", str(nodes), "--roster-out", str(roster_dir)]
    assert main([*argv, "--nodes", "3", "--exist-ok"]) == 0
    first = (roster_dir / ROSTER_FILE).read_bytes(), (nodes / "node-1" / "party-1.key").read_bytes()
    assert main([*argv, "--nodes", "3", "--exist-ok"]) == 0  # a second `up`: kept
    again = (roster_dir / ROSTER_FILE).read_bytes(), (nodes / "node-1" / "party-1.key").read_bytes()
    assert again == first and "(kept)" in capsys.readouterr().out
    assert main([*argv, "--nodes", "3"]) == 2  # no overwrite without --exist-ok
    assert "refusing to overwrite" in capsys.readouterr().err
    assert main([*argv, "--nodes", "4", "--exist-ok"]) == 2
    assert "made for 3 node(s), not 4" in capsys.readouterr().err
    assert main([*argv, "--nodes", "3", "--min-uploads", "3", "--exist-ok"]) == 2
    assert "requires 2 signer(s), not 3" in capsys.readouterr().err
    # A node's volume that lost its key, or holds another: refused, not silently replaced.
    (nodes / "node-2" / "party-2.key").write_bytes((nodes / "node-1" / "party-1.key").read_bytes())
    assert main([*argv, "--nodes", "3", "--exist-ok"]) == 2
    assert "not the roster's key of node 2" in capsys.readouterr().err
    (nodes / "node-2" / "party-2.key").unlink()
    assert main([*argv, "--nodes", "3", "--exist-ok"]) == 2
    assert main([*argv, "--nodes", "3", "--min-uploads", "4"]) == 2  # more than the nodes


def test_identities_cut_short_start_over(tmp_path):
    """Without the roster (written last), the next provisioning makes every key anew."""
    nodes, roster_dir = tmp_path / "nodes", tmp_path / "client"
    make_node_identities(nodes, roster_dir, 2, 2)
    (roster_dir / ROSTER_FILE).unlink()
    old = (nodes / "node-0" / "party-0.key").read_bytes()
    roster = make_node_identities(nodes, roster_dir, 2, 2, exist_ok=True)
    assert (nodes / "node-0" / "party-0.key").read_bytes() != old
    assert load_roster(roster_dir) == roster
