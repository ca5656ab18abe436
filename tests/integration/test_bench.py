"""`fedpriv bench`'s settings and measurements (`--quick`'s fields: test_tour.py)."""

import pytest

from fedpriv.bench.federation import process_tree_rss
from fedpriv.bench.settings import BenchSettings
from fedpriv.errors import ConfigError


def test_bench_settings_validate_themselves():
    with pytest.raises(ConfigError):
        BenchSettings(sizes=(0,))
    with pytest.raises(ConfigError):
        BenchSettings(presets=("nope",))


def test_process_tree_rss_counts_this_process():
    import os

    assert process_tree_rss(os.getpid()) > 10 * 1024**2
