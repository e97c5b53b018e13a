"""The lower-bound memory estimates that refuse a flow or a number of samples no machine here can hold."""
from __future__ import annotations

import pytest

from bruno.config import load_config, override
from bruno.errors import ConfigError
from bruno.memory import check_fits, flow_bytes, machine_memory, sample_bytes
from tests.conftest import REPO


def test_flow_bytes_counts_the_conv_networks() -> None:
    tiny = load_config(REPO / "config_rnn/tiny.yaml")  # S = 2, F = 8, R = 1, 16x16
    weights = 10 * 2 * 1 * 9 * 8 ** 2  # 3 + 3 couplings at scale 0, 4 at scale 1; two 3x3 F→F convs per block
    assert flow_bytes(tiny) == 4 * weights
    maps = 3 * 3 * 8 * (16 ** 2 + 8 ** 2) + 4 * 3 * 8 * 8 ** 2  # (2R + 1)·F maps of each network's pixels
    assert flow_bytes(tiny, images=5) == 4 * (4 * weights + 5 * maps)


def test_every_shipped_config_fits_a_24_gib_machine() -> None:
    for path in sorted((REPO / "config_rnn").glob("*.yaml")):
        config = load_config(path)
        assert flow_bytes(config, config.train.batch_size * config.train.seq_len) < 24 * 2 ** 30, path.name


def test_check_fits_names_the_label_and_the_sizes() -> None:
    check_fits(machine_memory() - 1, "x", "it")
    with pytest.raises(ConfigError, match=r"^--samples 7: it needs at least [\d.]+ GiB, more than this machine's [\d.]+ GiB"):
        check_fits(machine_memory() + 2 ** 30, "--samples 7", "it")
    assert sample_bytes(10, 8, 256, 8) == 4 * 10 * 8 * (2 * 256 + 8)
    huge = override(load_config(REPO / "config_rnn/tiny.yaml"), "model.flow", num_filters=10 ** 8)
    with pytest.raises(ConfigError, match=r"num_filters=100000000"):
        from bruno.runs import make_model

        make_model(huge)
