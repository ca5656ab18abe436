"""Registries: the names a user can choose, their implementations, their traits."""

import pytest

from fedpriv.config import RunConfig
from fedpriv.errors import ConfigError
from fedpriv.registry import (
    DATASETS,
    DEFENSES,
    MODELS,
    PARTITIONERS,
    SCHEMES,
    Aggregation,
    Defense,
    Registry,
    Trait,
    check_dataset_name,
)
from fedpriv.schemes.base import AggregationScheme


def test_every_registered_name_loads_its_implementation():
    for registry in (SCHEMES, DEFENSES, MODELS, DATASETS, PARTITIONERS):
        for name in registry:
            assert registry.load(name) is not None, (registry.kind, name)
    assert all(issubclass(SCHEMES.load(a), AggregationScheme) for a in Aggregation)
    assert set(SCHEMES.names()) == {a.value for a in Aggregation}
    assert set(DEFENSES.names()) == {d.value for d in Defense}


def test_scheme_classes_name_themselves_as_registered():
    for name in SCHEMES:
        assert SCHEMES.load(name).name == name


def test_unknown_names_list_choices_and_suggest_the_closest():
    with pytest.raises(ConfigError, match=r"unknown model 'mpl' \(did you mean 'mlp'\?\)"):
        MODELS.check("mpl")
    with pytest.raises(
        ConfigError,
        match="valid choices: digits, mnist5k, synthetic, synthetic50k, "
        "<package.module:attribute>, hf:",
    ):
        check_dataset_name("cifar")
    assert check_dataset_name("hf:some/id") == "hf:some/id"


def test_traits_decide_which_defense_composes_with_which_scheme():
    assert SCHEMES.providing(Trait.NOISY_SUM) == ("ckks",)
    with pytest.raises(ConfigError, match="defense 'dp' needs aggregation 'ckks'"):
        RunConfig(aggregation="secagg", defense="dp")
    # The trait is what the DP wrapper needs from the strategy it wraps.
    from fedpriv.defenses.accounting import ClientSampling
    from fedpriv.defenses.dp import DPSettings
    from fedpriv.defenses.server_noise import ServerSideNoise
    from fedpriv.strategies.plaintext import PlaintextFedAvg
    from fedpriv.strategies.sampling import Sampling

    with pytest.raises(ConfigError, match="PlaintextFedAvg cannot"):
        ServerSideNoise(PlaintextFedAvg(Sampling()), DPSettings(), ClientSampling(2, 2))


def test_a_registry_is_ordered_and_loads_lazily():
    registry = Registry("thing", {"b": "json:dumps", "a": "json:loads"})
    assert registry.names() == ("b", "a") and "a" in registry
    assert registry.load("b")([1]) == "[1]"
