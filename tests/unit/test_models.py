import numpy as np
import pytest
import torch

from fedpriv.errors import ConfigError
from fedpriv.models import build_model, load_state, model_state
from fedpriv.parameters import state_to_vector, vector_to_state
from fedpriv.registry import MODELS


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 12, 12)])
def test_models_map_images_to_logits(name, shape):
    model = build_model(name, shape, 10)
    assert model(torch.zeros(4, *shape)).shape == (4, 10)


def test_lenet_and_convnet_sizes():
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert 55_000 < count(build_model("cnn", (1, 28, 28), 10)) < 70_000
    assert count(build_model("convnet", (1, 28, 28), 10)) > 500_000


def test_seed_fixes_initial_weights_without_touching_global_rng():
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    a = model_state(build_model("mlp", (1, 8, 8), 10, seed=5))
    after = torch.rand(1)
    b = model_state(build_model("mlp", (1, 8, 8), 10, seed=5))
    c = model_state(build_model("mlp", (1, 8, 8), 10, seed=6))
    assert before == after
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not all(np.array_equal(a[k], c[k]) for k in a)


def test_state_vector_roundtrip():
    model = build_model("cnn", (1, 8, 8), 10, seed=1)
    state = model_state(model)
    vector = state_to_vector(state)
    back = vector_to_state(vector, state)
    assert all(np.array_equal(state[k], back[k]) and back[k].dtype == state[k].dtype for k in state)
    load_state(model, back)
    with pytest.raises(ValueError, match="has 3 values"):
        vector_to_state(np.zeros(3), state)


def test_unknown_model():
    with pytest.raises(ConfigError, match="valid choices: mlp, cnn, convnet"):
        build_model("vit", (1, 8, 8), 10)
