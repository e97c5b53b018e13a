from __future__ import annotations

import numpy as np

from bruno.config import PhantomConfig
from bruno.data.phantom import phantom_subject, phantom_volumes

CONFIG = PhantomConfig(num_subjects=3, size=32, spacing_mm=6.0, seed=5)


def test_deterministic_by_seed_and_index() -> None:
    a = phantom_subject(1, CONFIG)
    b = phantom_subject(1, CONFIG)
    np.testing.assert_array_equal(a.data, b.data)
    other_seed = phantom_subject(1, PhantomConfig(num_subjects=3, size=32, spacing_mm=6.0, seed=6))
    assert not np.array_equal(a.data, other_seed.data)
    grown = PhantomConfig(num_subjects=10, size=32, spacing_mm=6.0, seed=5)
    np.testing.assert_array_equal(phantom_subject(1, grown).data, a.data)


def test_shape_geometry_and_ids() -> None:
    volumes = list(phantom_volumes(CONFIG))
    assert [v.subject for v in volumes] == ["phantom_0000", "phantom_0001", "phantom_0002"]
    for v in volumes:
        assert v.data.shape == (32, 32, 32) and v.data.dtype == np.float32
        np.testing.assert_allclose(v.spacing, [6.0, 6.0, 6.0])
        assert np.isfinite(v.data).all() and v.data.min() >= 0


def test_subjects_differ_but_share_anatomy() -> None:
    a, b = (phantom_subject(i, CONFIG).data for i in (0, 1))
    corr = np.corrcoef(a.ravel(), b.ravel())[0, 1]
    assert 0.5 < corr < 0.99  # same kind of anatomy, not the same head


def test_slices_are_consistent_within_a_subject() -> None:
    """Neighbouring slices of one subject resemble each other more than the same slice of another subject."""
    a, b = (phantom_subject(i, CONFIG).data for i in (0, 1))
    z = 16
    within = np.corrcoef(a[:, :, z].ravel(), a[:, :, z + 1].ravel())[0, 1]
    across = np.corrcoef(a[:, :, z].ravel(), b[:, :, z].ravel())[0, 1]
    assert within > across


def test_head_is_brighter_inside_than_background_and_nose_is_anterior() -> None:
    data = phantom_subject(0, CONFIG).data
    assert data[16, 16, 16] > 5 * data[0, 0, 31]
    # Tissue extends further towards +y (anterior: nose, eyes) than towards -y at eye level.
    head = data[:, :, 12] > 0.3 * data.max()
    ys = np.nonzero(head.any(axis=0))[0]
    assert ys.max() - 15.5 > 15.5 - ys.min()
