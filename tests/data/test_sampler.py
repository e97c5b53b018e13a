from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bruno.data.preprocess import build_slice_table
from bruno.data.sampler import SequenceSampler
from bruno.data.table import SliceTable
from tests.conftest import phantom_config


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> SliceTable:
    return build_slice_table(phantom_config(tmp_path_factory.mktemp("sampler"), subjects=8), progress=False)


def test_shapes_one_hot_and_dequantisation(table: SliceTable) -> None:
    sampler = SequenceSampler(table, "train", batch_size=3, seq_len=5, seed=0)
    batch = next(sampler.batches())
    images, poses, volumes = batch["images"], batch["poses"], batch["volume"]
    assert images.shape == (3, 5, 16, 16, 1) and images.dtype == np.float32
    assert poses.shape == (3, 5, 8) and poses.dtype == np.float32
    np.testing.assert_array_equal(poses.sum(-1), 1.0)
    assert set(np.unique(poses)) == {0.0, 1.0}
    pose_index = poses.argmax(-1)
    stored = table.read(volumes[:, None] * table.num_poses + pose_index)
    np.testing.assert_array_equal(np.floor(images[..., 0]), stored)
    noise = images[..., 0] - stored
    assert noise.min() >= 0.0 and noise.max() < 1.0 and abs(noise.mean() - 0.5) < 0.05


def test_sequences_are_distinct_slices_of_one_split_volume(table: SliceTable) -> None:
    sampler = SequenceSampler(table, "test", batch_size=4, seq_len=8, seed=1)
    allowed = set(table.volumes_in("test"))
    for batch in sampler.batches(5):
        assert set(batch["volume"]) <= allowed
        for sequence in batch["poses"].argmax(-1):
            assert len(set(sequence)) == 8  # T distinct slices
    orders = [tuple(b["poses"].argmax(-1)[0]) for b in sampler.batches(5)]
    assert len(set(orders)) > 1  # random order, not sorted


def test_deterministic_by_seed(table: SliceTable) -> None:
    def draw(seed: int) -> list[np.ndarray]:
        return [b["images"] for b in SequenceSampler(table, "train", 2, 4, seed).batches(3)]

    for a, b in zip(draw(7), draw(7)):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(draw(7)[0], draw(8)[0])


def test_tf_dataset_matches_numpy_stream(table: SliceTable) -> None:
    sampler = SequenceSampler(table, "train", batch_size=2, seq_len=4, seed=3)
    expected = list(sampler.batches(3))
    got = list(sampler.dataset(3))
    assert len(got) == 3
    for e, g in zip(expected, got):
        np.testing.assert_array_equal(g["images"].numpy(), e["images"])
        np.testing.assert_array_equal(g["poses"].numpy(), e["poses"])
    replayed = list(sampler.dataset(3).skip(2))
    np.testing.assert_array_equal(replayed[0]["images"].numpy(), expected[2]["images"])


def test_bad_arguments(table: SliceTable, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"seq_len=9, expected 1\.\.8"):
        SequenceSampler(table, "train", 2, 9, 0)
    with pytest.raises(ValueError, match=r"batch_size=0, expected >= 1"):
        SequenceSampler(table, "train", 0, 2, 0)
    with pytest.raises(ValueError, match=r"split='tst', expected one of train, val, test"):
        SequenceSampler(table, "tst", 2, 2, 0)
    one = build_slice_table(phantom_config(tmp_path, subjects=1), progress=False)
    with pytest.raises(ValueError, match=r"the val split has no volumes"):
        SequenceSampler(one, "val", 2, 2, 0)


def test_next_batch_stream_state_round_trips(table: SliceTable) -> None:
    sampler = SequenceSampler(table, "train", 2, 3, seed=9)
    first = sampler.next_batch()
    np.testing.assert_array_equal(first["images"], next(sampler.batches())["images"])  # same stream as batches()
    saved = sampler.state
    expected = [sampler.next_batch()["images"] for _ in range(2)]
    resumed = SequenceSampler(table, "train", 2, 3, seed=123)
    resumed.state = saved
    for e in expected:
        np.testing.assert_array_equal(resumed.next_batch()["images"], e)
