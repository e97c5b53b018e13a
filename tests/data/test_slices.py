from __future__ import annotations

import numpy as np
import pytest

from bruno.config import DataConfig
from bruno.data.nifti import Volume
from bruno.data.slices import extract_slices, intensity_bounds, slab_bounds, slices_to_volume, to_uint8, volume_to_slices
from bruno.errors import VolumeError


def make_volume(data: np.ndarray, spacing: tuple[float, float, float] = (1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0)) -> Volume:
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = origin
    return Volume("test://volume", "s", data.astype(np.float32), affine, data.shape)


def window(**kwargs: object) -> DataConfig:
    """Identity intensity mapping (window 0..255) so voxel values can be read back."""
    values: dict[str, object] = dict(intensity="window", intensity_range=(0.0, 255.0), slab_fraction=1.0)
    values.update(kwargs)
    return DataConfig(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "depth, fraction, bounds",
    [(120, 0.75, (15, 105)), (10, 1.0, (0, 10)), (90, 0.5, (23, 68)), (5, 0.1, (2, 3)), (1, 0.2, (0, 1))],
)
def test_slab_bounds(depth: int, fraction: float, bounds: tuple[int, int]) -> None:
    assert slab_bounds(depth, fraction) == bounds


def test_slab_with_one_pose_per_slice_keeps_slices_exactly() -> None:
    z = np.arange(40, dtype=np.float32)
    data = np.broadcast_to(z * 2.0, (16, 16, 40)).copy()
    out = extract_slices(make_volume(data), window(slab_fraction=0.75, num_poses=30, image_size=16))
    assert (out.slab_start, out.slab_stop) == (5, 35)
    np.testing.assert_array_equal(out.images[:, 8, 8], 2 * np.arange(5, 35))


def test_pose_resampling_to_fewer_poses() -> None:
    z = np.arange(40, dtype=np.float32)
    data = np.broadcast_to(z * 4.0, (16, 16, 40)).copy()
    out = extract_slices(make_volume(data), window(num_poses=20, image_size=16))
    # Pose q samples slice index -0.5 + (q + 0.5) * 2 = 2q + 0.5, i.e. value 8q + 2 (linear ramp).
    np.testing.assert_allclose(out.images[1:-1, 8, 8], 8 * np.arange(1, 19) + 2, atol=1)


def test_slab_affine_maps_slices_to_world() -> None:
    """A linear function of world position survives resampling: image value = f(affine @ index)."""
    shape, spacing, origin = (8, 8, 12), (3.0, 3.0, 2.0), (-12.0, 5.0, 40.0)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = origin
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    world = (affine[:3, :3] @ index.T).T + affine[:3, 3]

    def f(xyz: np.ndarray) -> np.ndarray:
        return 100.0 + 1.0 * (xyz[..., 0] + 12) + 2.0 * (xyz[..., 1] - 5) + 0.5 * (xyz[..., 2] - 40)

    data = f(world).reshape(shape)
    out = extract_slices(make_volume(data, spacing, origin), window(num_poses=24, image_size=32))
    array = slices_to_volume(out.images.astype(np.float64))  # [W, H, N]
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in array.shape], indexing="ij"), -1)
    out_world = grid @ out.affine[:3, :3].T + out.affine[:3, 3]
    interior = (slice(4, -4), slice(4, -4), slice(3, -3))
    np.testing.assert_allclose(array[interior], f(out_world[interior]), atol=0.6)
    np.testing.assert_allclose(np.abs(np.diag(out.affine[:3, :3])), [24 / 32, 24 / 32, 1.0])


def test_resize_pads_to_a_physical_square() -> None:
    data = np.zeros((40, 20, 4), np.float32)
    data[15:25, 5:15] = 200.0  # a 10 x 10 mm square in a 40 x 20 mm field of view
    out = extract_slices(make_volume(data), window(num_poses=4, image_size=16))
    rows, cols = np.nonzero(out.images[0] > 100)
    assert rows.max() - rows.min() == cols.max() - cols.min() == 3  # 4 x 4 pixels: still square

    aniso = np.zeros((20, 40, 4), np.float32)  # 2 mm x 1 mm voxels: a 40 x 40 mm field of view
    aniso[5:15, 10:30] = 200.0  # 20 mm x 20 mm
    out = extract_slices(make_volume(aniso, spacing=(2.0, 1.0, 1.0)), window(num_poses=4, image_size=16))
    rows, cols = np.nonzero(out.images[0] > 100)
    assert rows.max() - rows.min() == cols.max() - cols.min() == 7


def test_image_orientation_anterior_up_right_on_the_right() -> None:
    data = np.zeros((16, 16, 4), np.float32)
    data[12:, 6:10] = 255.0  # right (high x)
    data[6:10, 12:] = 128.0  # anterior (high y)
    image = extract_slices(make_volume(data), window(num_poses=4, image_size=16)).images[0]
    assert image[8, 14] == 255 and image[8, 1] == 0  # right side of the image
    assert image[1, 8] == 128 and image[14, 8] == 0  # top of the image


def test_slices_volume_round_trip() -> None:
    images = np.random.default_rng(0).integers(0, 255, size=(5, 8, 6)).astype(np.uint8)
    array = slices_to_volume(images)
    assert array.shape == (6, 8, 5)
    assert array[2, 8 - 1 - 3, 4] == images[4, 3, 2]
    np.testing.assert_array_equal(volume_to_slices(array), images)


def test_to_uint8_maps_clips_and_rounds() -> None:
    values = np.array([5.0, 10.0, 12.5, 15.0, 20.0, 25.0])
    np.testing.assert_array_equal(to_uint8(values, 10.0, 20.0), [0, 0, 64, 128, 255, 255])
    assert to_uint8(values, 10.0, 20.0).dtype == np.uint8


def test_intensity_bounds() -> None:
    data = np.arange(101, dtype=np.float32)
    assert intensity_bounds(data, "percentile", (1.0, 99.0), "v") == (1.0, 99.0)
    assert intensity_bounds(data, "window", (-1000.0, 400.0), "v") == (-1000.0, 400.0)
    sparse = np.zeros(1000, np.float32)
    sparse[0] = 1.0
    with pytest.raises(VolumeError, match=r"v: intensity percentiles \[0\.5, 99\.5\] are both 0\.0"):
        intensity_bounds(sparse, "percentile", (0.5, 99.5), "v")


def test_percentile_mapping_of_a_volume() -> None:
    data = np.random.default_rng(0).normal(100, 20, size=(16, 16, 8)).astype(np.float32)
    out = extract_slices(make_volume(data), DataConfig(num_poses=8, image_size=16, slab_fraction=1.0))
    low, high = np.percentile(data, [0.5, 99.5])
    assert (out.intensity_low, out.intensity_high) == pytest.approx((low, high))
    assert out.images.dtype == np.uint8 and out.images.shape == (8, 16, 16)


def test_foreground_slab_reference() -> None:
    data = np.zeros((16, 16, 40), np.float32)
    data[4:12, 4:12, 10:30] = 100.0
    out = extract_slices(make_volume(data), window(num_poses=4, image_size=16, slab_fraction=0.5, slab_reference="foreground"))
    assert (out.slab_start, out.slab_stop) == (15, 25)
    with pytest.raises(VolumeError, match="found no foreground slices"):
        extract_slices(make_volume(data - 1000.0), window(num_poses=4, image_size=16, slab_reference="foreground"))
