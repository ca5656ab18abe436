import os
import stat

import pytest

from fedpriv.cli import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--dataset", "imagenet"], "unknown dataset 'imagenet'; valid choices: digits"),
        (["--model", "gpt"], "unknown model 'gpt'; valid choices: mlp, cnn, convnet"),
        (["--partitioner", "x"], "unknown partitioner 'x'; valid choices: iid, dirichlet"),
        (["--aggregation", "he"], "unknown aggregation 'he'; valid choices: plaintext, ckks"),
        (["--clients", "2000"], "num-clients 2000 is too many for 1797 samples"),
        (["--rounds", "0"], "num-server-rounds must be >= 1, got 0"),
        (["--fraction-train", "0"], "fraction-train must lie in (0, 1], got 0.0"),
        (["--fraction-evaluate", "1.2"], "fraction-evaluate must lie in (0, 1], got 1.2"),
        (["--aggregation", "ckks", "--ckks-preset", "x"], "unknown ckks-preset 'x'"),
    ],
)
def test_bad_input_is_one_line_exit_2(argv, message, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fedpriv: error: ") and message in err
    assert len(err.splitlines()) == 1
    assert not out.exists()


def test_existing_run_is_not_overwritten(tmp_path, capsys):
    (tmp_path / "config.json").write_text('{"mine": true}')
    assert main(["run", "--out", str(tmp_path)]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (tmp_path / "config.json").read_text() == '{"mine": true}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_missing_experiment_file(tmp_path, capsys):
    assert main(["run", "--config", str(tmp_path / "nope.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_keys_new_writes_private_client_context_and_refuses_overwrite(tmp_path, capsys):
    keys = tmp_path / "keys"
    assert main(["keys", "new", "--out", str(keys)]) == 0
    assert stat.S_IMODE(os.stat(keys / "client.ctx").st_mode) == 0o600
    assert "results: " in capsys.readouterr().out
    assert main(["keys", "new", "--out", str(keys)]) == 2


def test_keys_new_for_threshold_ckks_gives_each_node_its_own_signing_key(tmp_path, capsys):
    """No CKKS key is made ahead (the parties make it); each node gets its signing key and
    the roster, the server the roster alone: no node and not the server holds another's key."""
    from fedpriv.crypto.signing import load_identity, load_roster

    keys = tmp_path / "keys"
    assert main(["keys", "new", "--out", str(keys), "--preset", "n4096-threshold"]) == 2
    assert "--nodes" in capsys.readouterr().err
    argv = ["keys", "new", "--out", str(keys), "--preset", "n4096-threshold", "--nodes", "3"]
    assert main(argv) == 0
    assert f"server (the roster, public keys only): {keys / 'server'}" in capsys.readouterr().out
    assert sorted(p.name for p in (keys / "server").iterdir()) == ["roster.json"]
    roster = load_roster(keys / "server")
    for partition in range(3):
        node = keys / f"node-{partition}"
        held = sorted(p.name for p in (node / "identities").iterdir())
        assert held == [f"party-{partition}.key"]
        assert stat.S_IMODE(os.stat(node / "identities" / held[0]).st_mode) == 0o600
        key = load_identity(node, partition)
        assert roster.verify(partition, key.sign(b"statement"), b"statement")
    assert main(argv) == 2  # a roster is never overwritten
    assert main([*argv, "--exist-ok"]) == 0


def test_keys_presets_lists_presets(capsys):
    assert main(["keys", "presets"]) == 0
    out = capsys.readouterr().out
    assert all(
        name in out
        for name in ("n4096-packed", "n4096-compact", "n4096-additive", "nvflare-default")
    )


def test_version_and_help_with_defaults(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # one help line per flag

    from fedpriv import __version__

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and f"fedpriv {__version__}" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "run-config key num-clients; default: 5" in text
    assert "one of plaintext, ckks, ckks-threshold, secagg" in text


def test_a_mistyped_flag_shows_the_subcommand_usage(capsys):
    with pytest.raises(SystemExit) as done:
        main(["run", "--roundz", "3"])
    err = capsys.readouterr().err
    assert done.value.code == 2
    assert err.startswith("usage: fedpriv run") and "unrecognized arguments: --roundz 3" in err


def test_fewer_clients_than_a_round_needs_is_refused(tmp_path, capsys):
    assert main(["run", "--clients", "1", "--out", str(tmp_path / "run")]) == 2
    assert "below min-available-clients 2" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_attack_arguments_are_checked_first(tmp_path, capsys):
    assert main(["attack", "--run", str(tmp_path / "nope")]) == 2
    assert "is not a run directory" in capsys.readouterr().err
    (tmp_path / "config.json").write_text("{}")
    assert main(["attack", "--run", str(tmp_path), "--attacks", "lira"]) == 2
    err = capsys.readouterr().err
    assert "unknown attack 'lira'" in err and "valid choices: ig, dlg, idlg, loss" in err


def test_attack_takes_the_run_directory_as_an_argument_or_with_run(tmp_path, capsys):
    """`fedpriv attack RUN` as `fedpriv attack --run RUN`; neither, or two, is refused."""
    assert main(["attack", str(tmp_path / "nope")]) == 2
    assert "nope is not a run directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as missing:
        main(["attack"])
    assert missing.value.code == 2
    assert "the run directory is required" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["attack", str(tmp_path / "a"), "--run", str(tmp_path / "b")])
    assert "two run directories given" in capsys.readouterr().err


def test_attacks_without_a_threat_select_the_threats_they_apply_to():
    from fedpriv.cli.attack import plan_attacks

    assert plan_attacks(None, ["ig", "loss"]) == {
        "curious-server": ["ig"],
        "outsider": ["loss"],
        "colluding-client": ["ig"],
        "malicious-server": ["ig"],
    }
    assert plan_attacks("outsider", None)["outsider"][0] == "loss"


def test_resume_names_the_flags_to_drop_as_typed(tmp_path, capsys):
    assert main(["run", "--resume", str(tmp_path), "--lr", "0.1", "--clients", "4"]) == 2
    err = capsys.readouterr().err
    assert "only --rounds may extend it); drop --clients, --lr" in err and "[" not in err
    assert main(["run", "--resume", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "drop --out" in capsys.readouterr().err
