"""Experiment files: unknown tables and keys are refused by name, never ignored."""

import pytest

from fedpriv.compare.spec import load_comparison
from fedpriv.errors import ConfigError
from fedpriv.experiment import load_run_config


def _file(tmp_path, text):
    path = tmp_path / "experiment.toml"
    path.write_text(text)
    return path


def test_top_level_run_keys_and_overrides(tmp_path):
    config = load_run_config(_file(tmp_path, "num-clients = 3\n"), {"seed": 7})
    assert config.num_clients == 3 and config.seed == 7


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[runs]\ndataset = "mnist5k"\n',
            r"unknown table in .* '\[runs\]' \(did you mean '\[run\]'\?\)",
        ),
        ('[arm.x]\naggregation = "ckks"\n', r"'\[arm\]' \(did you mean '\[arms\]'\?\)"),
        ("[run]\nnum-client = 3\n", r"unknown key in \[run\] .* 'num-client' \(did you mean"),
        (
            "[attacks]\nshadow = 4\n",
            r"unknown key in \[attacks\] .* 'shadow' \(did you mean 'shadows'",
        ),
        ('[arms.a]\naggregaton = "ckks"\n', r"unknown key in \[arms.a\] .* 'aggregaton'"),
        ("[run\n", "is not valid TOML"),
    ],
)
def test_comparison_files_refuse_unknown_names(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_comparison(_file(tmp_path, text))


def test_run_files_refuse_unknown_keys(tmp_path):
    with pytest.raises(ConfigError, match="'learning_rate' .*did you mean 'learning-rate'"):
        load_run_config(_file(tmp_path, "[run]\nlearning_rate = 0.1\n"))


def test_arms_must_be_tables(tmp_path):
    with pytest.raises(ConfigError, match=r"\[arms.a\] must be a table"):
        load_comparison(_file(tmp_path, "[arms]\na = 1\n"))


def test_each_arm_gets_the_first_malicious_attack_its_scheme_allows(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(
        "[malicious-server]\n"
        'attack = ["decrypt-one", "isolation"]\n'
        "target = 1\n"
        '[arms.plain]\naggregation = "plaintext"\n'
        '[arms.threshold]\naggregation = "ckks-threshold"\n'
        '[arms.threshold-cnn]\naggregation = "ckks-threshold"\nmodel = "cnn"\n'
        '[arms.secagg-cnn]\naggregation = "secagg"\nmodel = "cnn"\n'
        '[arms.ckks]\naggregation = "ckks"\n'
    )
    comparison = load_comparison(path)
    twins = {arm.name: comparison.malicious_twin(arm) for arm in comparison.arms}
    played = {name: twin and twin.config.adversary for name, twin in twins.items()}
    assert played == {
        "plain": "malicious-server:isolation,target=1,round=2",
        "threshold": "malicious-server:decrypt-one,target=1,round=2",
        "threshold-cnn": "malicious-server:decrypt-one,target=1,round=2",
        "secagg-cnn": None,  # the crafted models are the MLP's
        "ckks": None,
    }
    assert all(t is None or t.config.num_server_rounds == 2 for t in twins.values())
    assert load_comparison(path, quick=True).malicious_twin(comparison.arms[0]) is None
