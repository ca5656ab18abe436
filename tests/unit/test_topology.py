"""The Deployment Engine's flags and connections, as the launcher and compose use them."""

from pathlib import Path

import pytest
from flwr.common.config import parse_config_args

from fedpriv.config import RunConfig
from fedpriv.deploy import topology
from fedpriv.deploy.flwr_cli import run_config_string
from fedpriv.deploy.local import LocalDeployment
from fedpriv.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SERVER_SIDE = ("superlink", "superexec-serverapp", "submit")


def test_node_auth_needs_tls(tmp_path):
    with pytest.raises(ConfigError, match="needs TLS"):
        LocalDeployment(RunConfig(), tmp_path, tls=False, node_auth=True)


def test_run_config_string_round_trips():
    config = RunConfig(aggregation="ckks", key_dir="/k", record_server_view=False)
    parsed = parse_config_args([run_config_string(config)])
    assert RunConfig.from_flower(parsed) == config


def test_connection_toml_names_tls_or_insecure():
    assert "insecure = true" in topology.connection_toml("deploy", "127.0.0.1:1", None)
    tls = topology.connection_toml("deploy", "superlink:9093", "/certs/ca.crt")
    assert 'root-certificates = "/certs/ca.crt"' in tls and "insecure" not in tls


def test_submit_needs_tls_or_an_explicit_insecure(capsys):
    from fedpriv.cli import main

    assert main(["deploy", "submit", "--superlink", "127.0.0.1:1"]) == 2
    assert "--ca CA_CERT for TLS, or --insecure" in capsys.readouterr().err
