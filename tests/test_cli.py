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


def test_keys_presets_lists_presets(capsys):
    assert main(["keys", "presets"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("n4096-compact", "n4096-additive", "nvflare-default"))
