import tomllib
from pathlib import Path

import pytest

from fedpriv.config import RunConfig
from fedpriv.errors import ConfigError
from fedpriv.experiment import load_run_config

ROOT = Path(__file__).resolve().parents[2]


def test_pyproject_defaults_are_runconfig_defaults():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    defaults = pyproject["tool"]["flwr"]["app"]["config"]
    assert defaults == RunConfig().to_flower()


def test_roundtrip_through_flower_config():
    config = RunConfig(aggregation="ckks", num_clients=7, learning_rate=0.2)
    assert RunConfig.from_flower(config.to_flower()) == config


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"aggregation": "rot13"}, "valid choices: plaintext, ckks"),
        ({"dataset": "cifar"}, "valid choices: digits, mnist5k, synthetic"),
        ({"model": "vit"}, "valid choices: mlp, cnn, convnet"),
        ({"partitioner": "random"}, "valid choices: iid, dirichlet, shards"),
        ({"num_server_rounds": 0}, "num-server-rounds must be >= 1"),
        ({"fraction_train": 0.0}, "fraction-train must lie in (0, 1]"),
        ({"fraction_evaluate": 1.5}, "fraction-evaluate must lie in (0, 1]"),
        (
            {"aggregation": "ckks", "ckks_preset": "tiny"},
            "valid choices: n4096-packed, n4096-compact",
        ),
        ({"num_clients": "5"}, "num-clients must be of type int"),
    ],
)
def test_invalid_values_name_the_problem(changes, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("]", r"\]")):
        RunConfig(**changes)


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError, match="unknown run-config key.*num-rounds.*valid choices"):
        RunConfig.from_flower({"num-rounds": 3})


def test_from_toml_reads_run_table_and_overrides(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text('[run]\naggregation = "ckks"\nnum-clients = 4\n')
    config = load_run_config(path, {"num-clients": 6})
    assert config.aggregation == "ckks" and config.num_clients == 6


def test_experiment_files_in_repo_are_valid():
    for path in sorted((ROOT / "experiments").glob("*.toml")):
        load_run_config(path)


def test_every_unknown_key_is_named_at_once():
    """Two typos in one file: one error names both, each with its closest key."""
    with pytest.raises(ConfigError) as refused:
        RunConfig.from_flower({"num-clientz": 3, "learning-rat": 0.1, "dataset": "digits"})
    message = str(refused.value)
    assert message.startswith("unknown run-config keys 'num-clientz'")
    assert "(did you mean 'num-clients'?)" in message
    assert "'learning-rat' (did you mean 'learning-rate'?)" in message
