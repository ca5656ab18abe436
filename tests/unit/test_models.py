import numpy as np
import pytest
import torch
from opacus.validators import ModuleValidator
from opacus.validators.errors import UnsupportedModuleError
from torch import nn

from fedpriv.config import RunConfig
from fedpriv.errors import ConfigError
from fedpriv.models import build_model, load_state, model_state
from fedpriv.models.resnet import PadShortcut, ResNet18, ResNet20, group_norm
from fedpriv.parameters import state_to_vector, vector_to_state
from fedpriv.registry import MODELS

RESNETS = ["resnet18", "resnet18-gn", "resnet20", "resnet20-gn"]


def count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 12, 12)])
def test_models_map_images_to_logits(name, shape):
    model = build_model(name, shape, 10)
    assert model(torch.zeros(2, *shape)).shape == (2, 10)


@pytest.mark.parametrize("name", RESNETS)
def test_resnets_train_on_cifar_shapes(name):
    model = build_model(name, (3, 32, 32), 10, seed=0).train()
    logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_lenet_and_convnet_sizes():
    assert 55_000 < count(build_model("cnn", (1, 28, 28), 10)) < 70_000
    assert count(build_model("convnet", (1, 28, 28), 10)) > 500_000


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("resnet18", 11_173_962),  # the CIFAR ResNet-18 (about 11.17M)
        ("resnet18-gn", 11_173_962),  # GroupNorm has BatchNorm's scale and shift
        ("resnet20", 269_722),  # He et al. 2016: 0.27M with option A shortcuts
        ("resnet20-gn", 269_722),
    ],
)
def test_resnet_parameter_counts(name, expected):
    assert count(build_model(name, (3, 32, 32), 10)) == expected


def test_resnet20_has_option_a_shortcuts_and_resnet18_projections():
    def convs(model):
        return sum(isinstance(m, nn.Conv2d) for m in model.modules())

    resnet20 = ResNet20((3, 32, 32), 10)
    assert convs(resnet20) == 19  # 19 conv + 1 linear = 20 layers
    assert sum(isinstance(m, PadShortcut) for m in resnet20.modules()) == 2
    assert convs(ResNet18((3, 32, 32), 10)) == 17 + 3  # 17 conv, 3 projection shortcuts


@pytest.mark.parametrize("name", ["resnet18-gn", "resnet20-gn"])
def test_groupnorm_resnets_are_what_opacus_would_make_of_the_batchnorm_ones(name):
    model = build_model(name, (3, 32, 32), 10)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert not any(k.endswith(("running_mean", "running_var")) for k in model.state_dict())
    assert ModuleValidator.validate(model, strict=True) == []
    fixed = ModuleValidator.fix(build_model(name.removesuffix("-gn"), (3, 32, 32), 10))
    leaves = lambda m: [(n, repr(x)) for n, x in m.named_modules() if not list(x.children())]  # noqa: E731
    assert leaves(fixed) == leaves(model)


@pytest.mark.parametrize("name", ["resnet18", "resnet20"])
def test_batchnorm_resnets_fail_opacus_validation(name):
    model = build_model(name, (3, 32, 32), 10)
    with pytest.raises(UnsupportedModuleError, match="BatchNorm"):
        ModuleValidator.validate(model, strict=True)


def test_group_norm_groups_divide_the_channels():
    groups = {c: group_norm(c).num_groups for c in (16, 32, 64, 128, 256, 512)}
    assert groups == {16: 16, 32: 32, 64: 32, 128: 32, 256: 32, 512: 32}


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")
def test_groupnorm_resnet20_has_per_sample_gradients():
    from opacus import GradSampleModule

    model = GradSampleModule(build_model("resnet20-gn", (1, 8, 8), 10, seed=0))
    loss = nn.functional.cross_entropy(model(torch.randn(3, 1, 8, 8)), torch.tensor([0, 1, 2]))
    loss.backward()
    assert all(p.grad_sample.shape[0] == 3 for p in model.parameters())


@pytest.mark.parametrize("name", ["resnet20", "resnet20-gn"])  # ResNet-18 shares the code
def test_resnet_seed_fixes_initial_weights(name):
    a = model_state(build_model(name, (1, 8, 8), 10, seed=3))
    b = model_state(build_model(name, (1, 8, 8), 10, seed=3))
    c = model_state(build_model(name, (1, 8, 8), 10, seed=4))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert not all(np.array_equal(a[k], c[k]) for k in a)


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


def test_batchnorm_state_holds_running_statistics_but_no_batch_counter():
    model = build_model("resnet20", (1, 8, 8), 10, seed=1).train()
    before = model_state(model)
    model(torch.randn(4, 1, 8, 8))
    state = model_state(model)
    assert not any(k.endswith("num_batches_tracked") for k in state)
    assert not np.array_equal(state["stem.1.running_mean"], before["stem.1.running_mean"])
    back = vector_to_state(state_to_vector(state), state)
    assert all(np.array_equal(state[k], back[k]) and back[k].dtype == state[k].dtype for k in state)
    load_state(model, back)
    # A checkpoint of a torch BatchNorm (with the counter) loads too.
    load_state(model, {**back, "stem.1.num_batches_tracked": np.array(7)})


def test_dp_sgd_refuses_batchnorm_models_naming_the_groupnorm_ones():
    with pytest.raises(ConfigError, match=r"needs a model in which .*resnet20-gn\); got model"):
        RunConfig(defense="dp-sgd", model="resnet20")
    RunConfig(defense="dp-sgd", model="resnet20-gn")


def test_integer_buffers_round_to_nearest_not_truncate():
    template = {"w": np.zeros(2, dtype=np.float32), "n": np.zeros((), dtype=np.int64)}
    for mean, expected in [(4.9999999, 5), (5.0000001, 5), (4.4, 4), (4.6, 5), (-0.6, -1)]:
        out = vector_to_state(np.array([0.25, 0.5, mean]), template)
        assert isinstance(out["n"], np.ndarray) and out["n"].shape == ()
        assert out["n"].dtype == np.int64 and out["n"] == expected
        assert out["w"].dtype == np.float32 and out["w"].tolist() == [0.25, 0.5]
    # FedAvg of three clients that each took 7 steps, weighed 1/3 each, is one ulp short of 7
    mean = sum(n * (1 / 3) for n in (7, 7, 7))
    assert mean < 7 and int(mean) == 6
    assert vector_to_state(np.array([0.0, 0.0, mean]), template)["n"] == 7


def test_unknown_model():
    with pytest.raises(ConfigError, match="valid choices: mlp, cnn, convnet"):
        build_model("vit", (1, 8, 8), 10)


def test_the_benchmark_sizes_named_after_models_are_those_models_sizes():
    from fedpriv.bench.settings import SIZE_MODELS

    shapes = {"1x28x28": (1, 28, 28), "3x32x32": (3, 32, 32)}
    for size, label in SIZE_MODELS.items():
        name, shape = label.split(" on ")
        state = model_state(build_model(name, shapes[shape], 10))
        assert sum(v.size for v in state.values()) == size, label
