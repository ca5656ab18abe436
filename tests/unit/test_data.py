import numpy as np
import pytest

from fedpriv.data import Partitioning, load_dataset, partition_indices
from fedpriv.errors import ConfigError


def test_bundled_datasets_shapes():
    digits = load_dataset("digits")
    assert digits.x.shape == (1797, 1, 8, 8) and digits.x.dtype == np.float32
    assert 0.0 <= digits.x.min() and digits.x.max() <= 1.0
    mnist = load_dataset("mnist5k")
    assert mnist.x.shape == (5000, 1, 28, 28) and set(np.unique(mnist.y)) == set(range(10))
    synthetic = load_dataset("synthetic")
    assert synthetic.input_shape == (1, 8, 8) and synthetic.num_classes == 10


@pytest.mark.parametrize("partitioner", ["iid", "dirichlet", "shards"])
def test_partition_covers_every_record_once(partitioner):
    labels = load_dataset("digits").y
    parts = partition_indices(labels, 10, partitioner, seed=3, alpha=0.5)
    joined = np.concatenate(parts)
    assert len(parts) == 10
    assert np.array_equal(np.sort(joined), np.arange(len(labels)))
    assert min(len(p) for p in parts) >= 2


@pytest.mark.parametrize("partitioner", ["iid", "dirichlet", "shards"])
def test_partition_is_deterministic_in_seed(partitioner):
    labels = load_dataset("digits").y
    a = partition_indices(labels, 8, partitioner, seed=1)
    b = partition_indices(labels, 8, partitioner, seed=1)
    c = partition_indices(labels, 8, partitioner, seed=2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_iid_sizes_are_balanced():
    parts = partition_indices(load_dataset("digits").y, 7, "iid", seed=0)
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1


def _label_entropy(labels, parts):
    entropies = []
    for part in parts:
        counts = np.bincount(labels[part], minlength=10) / len(part)
        nz = counts[counts > 0]
        entropies.append(-(nz * np.log(nz)).sum())
    return float(np.mean(entropies))


def test_dirichlet_skews_labels_more_as_alpha_shrinks():
    labels = load_dataset("mnist5k").y
    iid = _label_entropy(labels, partition_indices(labels, 10, "iid", seed=0))
    mild = _label_entropy(labels, partition_indices(labels, 10, "dirichlet", 0, alpha=10.0))
    skew = _label_entropy(labels, partition_indices(labels, 10, "dirichlet", 0, alpha=0.1))
    assert iid > mild > skew
    assert skew < 0.6 * iid


def test_shards_give_each_client_few_labels():
    labels = load_dataset("mnist5k").y
    parts = partition_indices(labels, 10, "shards", seed=0, shards_per_client=2)
    # Two shards of a label-sorted order: at most 2 labels each, plus a boundary overlap.
    assert max(len(np.unique(labels[p])) for p in parts) <= 4


def test_more_clients_than_samples_is_refused():
    with pytest.raises(ConfigError, match="too many for 1797 samples"):
        partition_indices(load_dataset("digits").y, 1000, "iid", seed=0)


def test_client_split_is_deterministic_and_disjoint():
    part = Partitioning("digits", 5, seed=4, test_fraction=0.25)
    a, b = part.client(2), part.client(2)
    assert np.array_equal(a.train_indices, b.train_indices)
    assert not set(a.train_indices) & set(a.test_indices)
    assert len(a.test_indices) == round(0.25 * (len(a.train_indices) + len(a.test_indices)))
    assert np.array_equal(a.x_train, load_dataset("digits").x[a.train_indices])


def test_thousand_clients_share_one_index_split():
    part = Partitioning("mnist5k", 1000, seed=0)
    # The split itself is one int64 index per record: no copies of the data per client.
    assert sum(p.nbytes for p in part.parts) == 5000 * 8
    assert part.dataset is load_dataset("mnist5k")
    assert len(part.client(999).y_train) >= 1


def test_hub_loader_reads_a_dataset_saved_on_disk(tmp_path):
    datasets = pytest.importorskip("datasets")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(30, 12, 12), dtype=np.uint8)
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "label": datasets.ClassLabel(num_classes=3),
        }
    )
    from PIL import Image

    data = datasets.Dataset.from_dict(
        {"image": [Image.fromarray(img) for img in images], "label": [i % 3 for i in range(30)]},
        features=features,
    )
    data.save_to_disk(str(tmp_path / "toy"))
    loaded = load_dataset(f"hf:{tmp_path / 'toy'}")
    assert loaded.x.shape == (30, 1, 12, 12) and loaded.num_classes == 3
    np.testing.assert_allclose(loaded.x[5, 0], images[5] / 255.0, atol=1e-6)
    assert list(loaded.y[:4]) == [0, 1, 2, 0]
    parts = Partitioning(f"hf:{tmp_path / 'toy'}", 3, seed=0)
    assert len(parts.client(0).y_train) > 0


# -- the disk cache a fresh process reads -------------------------------------------------
def test_cache_entry_round_trips_and_rebuilds_what_is_corrupt(tmp_path, monkeypatch):
    import numpy as np

    from fedpriv.data.cache import cached_arrays, entry_path

    monkeypatch.setenv("FEDPRIV_CACHE_DIR", str(tmp_path))
    builds = []

    def build():
        builds.append(1)
        return {"a": np.arange(5), "b": np.ones((2, 2), np.float32)}

    arrays, hit = cached_arrays("thing", build, {"a", "b"})
    assert not hit and len(builds) == 1
    again, hit = cached_arrays("thing", build, {"a", "b"})
    assert hit and len(builds) == 1 and np.array_equal(again["b"], arrays["b"])
    path = entry_path("thing")
    path.write_bytes(path.read_bytes()[:40])  # truncated by a crash or a full disk
    _, hit = cached_arrays("thing", build, {"a", "b"})
    assert not hit and len(builds) == 2
    with np.load(path) as stored:
        np.savez(path, a=stored["a"])  # an entry of another layout: rebuilt
    _, hit = cached_arrays("thing", build, {"a", "b"})
    assert not hit and len(builds) == 3
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]


def test_cache_that_cannot_be_written_costs_only_the_rebuild(tmp_path, monkeypatch):
    import numpy as np

    from fedpriv.data.cache import cached_arrays

    monkeypatch.setenv("FEDPRIV_CACHE_DIR", str(tmp_path / "file"))
    (tmp_path / "file").write_text("not a folder")
    arrays, hit = cached_arrays("x", lambda: {"a": np.zeros(1)}, {"a"})
    assert not hit and arrays["a"].tolist() == [0.0]


def test_cached_dataset_and_split_equal_the_built_ones(tmp_path, monkeypatch):
    import numpy as np

    from fedpriv.data import datasets, partition

    monkeypatch.setenv("FEDPRIV_CACHE_DIR", str(tmp_path))
    built = []
    for _ in range(2):  # the second pass reads what the first stored
        datasets.load_dataset.cache_clear()
        partition._cached_parts.cache_clear()
        data = partition.Partitioning("digits", 5, "dirichlet", seed=3).client(2)
        built.append((datasets.load_dataset("digits"), data))
    (first, a), (second, b) = built
    assert np.array_equal(first.x, second.x) and np.array_equal(first.y, second.y)
    assert np.array_equal(a.train_indices, b.train_indices)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "dataset-digits.v1.npz",
        "split-digits-5-dirichlet-3-0.5-2.v1.npz",
    ]


def test_record_counts_are_what_each_client_gets_and_bound_a_round():
    from fedpriv.config import RunConfig
    from fedpriv.task import _partitioning, client_data, round_record_bounds

    config = RunConfig(
        partitioner="dirichlet", num_clients=12, fraction_train=0.25, fraction_evaluate=0.5
    )
    train, test = _partitioning(config).record_counts()
    for pid in range(config.num_clients):
        data = client_data(config, pid)
        assert (len(data.y_train), len(data.y_test)) == (train[pid], test[pid])
    # 3 clients trained, 6 evaluated: those with the most records.
    assert round_record_bounds(config) == (
        int(np.sort(train)[-3:].sum()),
        int(np.sort(test)[-6:].sum()),
    )
    # min-available-clients raises the sample; more SuperNodes than clients too.
    assert round_record_bounds(config.replace(min_available_clients=12))[0] == train.sum()
    assert round_record_bounds(config, nodes=24)[0] == int(np.sort(train)[-6:].sum())
    capped = config.replace(max_train_samples=2)
    assert round_record_bounds(capped)[0] == 6
