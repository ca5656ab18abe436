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


def test_status_poll_rides_out_a_superlink_restart(tmp_path, monkeypatch):
    """A restarting SuperLink keeps the run (its state is on disk); the poll waits for it."""
    from fedpriv.deploy import flwr_cli
    from fedpriv.errors import DeploymentError

    answers = [
        DeploymentError(f"flwr ls failed (1): {flwr_cli.UNREACHABLE}. Please check"),
        DeploymentError(f"flwr ls failed (1): {flwr_cli.UNREACHABLE}. Please check"),
        {"status": "finished:completed"},
    ]

    def status(*_args):
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(flwr_cli, "run_status", status)
    monkeypatch.setattr(flwr_cli, "STATUS_SECONDS", 0.01)
    said: list[str] = []
    final = flwr_cli.wait_for_run(7, {}, tmp_path, 10.0, said.append, None)
    assert final["status"] == "finished:completed" and not answers
    assert said == [
        "run 7: the SuperLink is unreachable; waiting for it",
        "run 7: the SuperLink is back",
        "run 7: finished:completed",
    ]
    # Any other failure is not waited out.
    monkeypatch.setattr(flwr_cli, "run_status", lambda *_: (_ for _ in ()).throw(
        DeploymentError("flwr ls failed (1): no such run")))  # fmt: skip
    with pytest.raises(DeploymentError, match="no such run"):
        flwr_cli.wait_for_run(7, {}, tmp_path, 10.0, said.append, None)


def test_submit_refuses_a_logs_folder_of_an_earlier_run_and_keeps_it(tmp_path, capsys):
    from fedpriv.cli import main

    logs = tmp_path / "logs-run"
    logs.mkdir()
    (logs / "run-status.json").write_text('{"status": "finished:completed"}\n')
    (logs / "serverapp.log").write_text("the earlier run\n")
    argv = ["deploy", "submit", "--superlink", "127.0.0.1:1", "--insecure", "--logs", str(logs)]
    assert main(argv) == 2
    assert "another FEDPRIV_RUN_NAME" in capsys.readouterr().err
    assert (logs / "serverapp.log").read_text() == "the earlier run\n"
    assert sorted(p.name for p in logs.iterdir()) == ["run-status.json", "serverapp.log"]
