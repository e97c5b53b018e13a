"""Motion simulation, Gaussian averaging, translation-only SVR, and the motion experiment script."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from bruno.errors import ConfigError
from bruno.experiments.motion.simulate import (
    STACK_AXES,
    acquire_stack,
    gaussian_average,
    random_translations,
    simulate_stacks,
    voxel_spacing,
)
from bruno.experiments.motion.study import default_contexts
from bruno.experiments.motion.svr import normalised_cross_correlation, register_stack, slice_to_volume
from bruno.metrics import cross_correlation, slice_scores
from tests.conftest import assert_one_line_error, head_like, run_script, train_tiny_run, write_nifti

SPACING = np.array([2.0, 3.0, 4.0])  # (dN, dH, dW) mm: anisotropic, so mm and voxels differ per axis


def blobs(shape: tuple[int, int, int] = (20, 24, 28), seed: int = 0) -> np.ndarray:
    """A smooth volume on 0..255: a sum of random Gaussian blobs (structure along every axis)."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij"))
    volume = np.zeros(shape)
    for _ in range(12):
        centre = rng.uniform(0.2, 0.8, 3) * np.array(shape)
        width = rng.uniform(2.0, 4.0)
        volume += rng.uniform(0.3, 1.0) * np.exp(-((grid - centre[:, None, None, None]) ** 2).sum(0) / (2 * width ** 2))
    return 255.0 * volume / volume.max()


def test_zero_translation_reproduces_the_volumes_own_slices() -> None:
    volume = blobs()
    stacks = simulate_stacks(volume, SPACING, 0.0, np.random.default_rng(0))
    assert [s.name for s in stacks] == list(STACK_AXES)
    for stack in stacks:
        np.testing.assert_array_equal(np.moveaxis(stack.slices, 0, stack.axis), volume)
        np.testing.assert_array_equal(stack.translations, 0.0)


def test_translations_are_in_mm_and_follow_the_voxel_size() -> None:
    volume = blobs()
    shifted = np.zeros((20, 3))
    shifted[:, 0] = 2.0  # one voxel along N (2 mm)
    axial = acquire_stack(volume, "axial", shifted, SPACING)
    np.testing.assert_allclose(axial.slices[:-1], volume[1:], atol=1e-9)
    np.testing.assert_array_equal(axial.slices[-1], 0.0)  # moved out of the volume
    shifted = np.zeros((28, 3))
    shifted[:, 1] = 1.5  # half a voxel along H (3 mm voxels): the mean of two neighbours
    sagittal = acquire_stack(volume, "sagittal", shifted, SPACING)
    np.testing.assert_allclose(sagittal.slices[5][:, :-1], 0.5 * (volume[:, :-1, 5] + volume[:, 1:, 5]), atol=1e-9)
    with pytest.raises(ConfigError, match=r"translations \(3, 3\): expected \(24, 3\) for the coronal stack"):
        acquire_stack(volume, "coronal", np.zeros((3, 3)), SPACING)


def test_translation_laws_statistics() -> None:
    uniform = random_translations(60000, 10.0, np.random.default_rng(1))
    assert uniform.shape == (60000, 3) and uniform.min() >= -10.0 and uniform.max() <= 10.0
    np.testing.assert_allclose(uniform.mean(0), 0.0, atol=0.1)  # se 5.77/√60000 = 0.024
    np.testing.assert_allclose(uniform.var(0), 100.0 / 3.0, rtol=0.02)  # U[-m, m]: m²/3
    np.testing.assert_allclose(np.corrcoef(uniform.T)[np.triu_indices(3, 1)], 0.0, atol=0.02)
    counts = np.histogram(uniform[:, 0], bins=10, range=(-10, 10))[0]
    np.testing.assert_allclose(counts / 6000.0, 1.0, atol=0.06)  # flat
    sphere = random_translations(60000, 10.0, np.random.default_rng(2), law="sphere")
    np.testing.assert_allclose(np.linalg.norm(sphere, axis=1), 10.0)
    np.testing.assert_allclose(sphere.mean(0), 0.0, atol=0.1)
    np.testing.assert_allclose(sphere.var(0), 100.0 / 3.0, rtol=0.02)  # isotropic: each axis m²/3
    again = random_translations(5, 10.0, np.random.default_rng(1))
    np.testing.assert_array_equal(again, uniform[:5])  # seeded
    with pytest.raises(ConfigError, match=r"translation law 'cube': expected one of uniform, sphere"):
        random_translations(3, 10.0, np.random.default_rng(0), law="cube")
    with pytest.raises(ConfigError, match=r"translation magnitude -1.0 mm: expected a number >= 0"):
        random_translations(3, -1.0, np.random.default_rng(0))


def test_gaussian_average_of_unmoved_stacks_is_close_to_the_volume() -> None:
    volume = blobs()
    stacks = simulate_stacks(volume, SPACING, 0.0, np.random.default_rng(0))
    average = gaussian_average(volume.shape, stacks, sigma_vox=1.0)
    # Slices on grid points: the normalised Gaussian filter of the volume, exactly.
    expected = (ndimage.gaussian_filter(volume, 1.0, mode="constant", truncate=3.0)
                / ndimage.gaussian_filter(np.ones(volume.shape), 1.0, mode="constant", truncate=3.0))
    np.testing.assert_allclose(average, expected, rtol=1e-10, atol=1e-9)
    assert np.sqrt(np.mean((average - volume) ** 2)) < 0.02 * 255  # close to the (smooth) volume
    assert slice_scores(average, volume).ssim.mean() > 0.95
    np.testing.assert_allclose(gaussian_average(volume.shape, stacks, sigma_vox=0.0), volume, atol=1e-9)  # no blur: the volume
    one = gaussian_average(volume.shape, stacks[:1], 1.0, offsets_vox=[np.zeros((20, 3))])
    np.testing.assert_allclose(one, expected, rtol=1e-10, atol=1e-9)  # one stack fills the grid as well
    with pytest.raises(ConfigError, match=r"Gaussian average sigma -1.0: expected a width >= 0"):
        gaussian_average(volume.shape, stacks, sigma_vox=-1.0)


def test_moved_stacks_average_worse_and_voxel_spacing_from_the_affine() -> None:
    volume = blobs()
    moved = simulate_stacks(volume, SPACING, 10.0, np.random.default_rng(0))
    still = simulate_stacks(volume, SPACING, 0.0, np.random.default_rng(0))
    score_moved = slice_scores(gaussian_average(volume.shape, moved), volume).ssim.mean()
    score_still = slice_scores(gaussian_average(volume.shape, still), volume).ssim.mean()
    assert score_moved < score_still - 0.05
    affine = np.diag([4.0, 3.0, 2.0, 1.0])  # [W, H, N] voxel → world
    affine[:3, :3] = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]]) @ affine[:3, :3]  # rotated axes keep their sizes
    np.testing.assert_allclose(voxel_spacing(affine), SPACING)


def test_normalised_cross_correlation_matches_the_metric() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 50)), rng.normal(size=(4, 50))
    np.testing.assert_allclose(normalised_cross_correlation(a, b), [cross_correlation(x, y) for x, y in zip(a, b)])
    assert normalised_cross_correlation(np.ones(5), rng.normal(size=5)) == 0.0


def test_svr_step_recovers_known_translations() -> None:
    volume = blobs()
    rng = np.random.default_rng(3)
    on_grid = rng.integers(-8, 9, (20, 3)) * 0.25 * SPACING  # multiples of the finest step: found exactly
    anywhere = rng.uniform(-5.0, 5.0, (20, 3))
    for truth_mm, tolerance_vox in ((on_grid, 1e-9), (anywhere, 0.25)):
        stack = acquire_stack(volume, "axial", truth_mm, SPACING)
        offsets, ncc = register_stack(volume, stack, np.zeros((20, 3)), limit_vox=10.0 / SPACING)
        content = stack.slices.reshape(20, -1).std(-1) >= 1.0
        assert content.sum() >= 15
        error = np.abs(offsets - truth_mm / SPACING)[content]  # voxels
        assert error.max() <= tolerance_vox, error.max()
        assert ncc[content].min() > 0.999
    capped, _ = register_stack(volume, stack, np.zeros((20, 3)), limit_vox=np.array([0.5, 0.5, 0.5]))
    assert np.abs(capped).max() <= 0.5  # corrections stay within the limit


def test_svr_loop_improves_a_moved_average() -> None:
    volume = blobs()
    stacks = simulate_stacks(volume, SPACING, 6.0, np.random.default_rng(4))
    start = gaussian_average(volume.shape, stacks, 1.0)
    result = slice_to_volume(stacks, start, iterations=2, sigma_vox=0.5, limit_vox=12.0 / SPACING)
    assert len(result.volumes) == len(result.offsets) == 3
    np.testing.assert_array_equal(result.volumes[0], start)
    errors = [np.mean([np.linalg.norm(o * SPACING - s.translations, axis=1).mean() for o, s in zip(offsets, stacks)])
              for offsets in result.offsets]
    assert errors[0] > 4.0 and errors[-1] < 0.5 * errors[0], errors
    ssim = [slice_scores(v, volume).ssim.mean() for v in result.volumes]
    assert ssim[-1] > ssim[0] + 0.03, ssim


def test_default_contexts_scale_the_fetal_set() -> None:
    assert default_contexts(80) == [10, 30, 50, 70]
    assert default_contexts(90) == [11, 34, 56, 79]
    assert default_contexts(32) == [4, 12, 20, 28]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_run(tmp_path_factory.mktemp("motion"), max_steps=2)


def test_motion_experiment_script(tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "motion"
    args = ("--run", str(tiny_run), "--samples", "2", "--svr-iterations", "2", "--out", str(out), "--no-progress")
    result = run_script("motion_experiment.py", *args)
    assert result.returncode == 0, result.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["num_subjects"] == 2 and results["contexts"] == [1, 3, 5, 7]  # 10/30/50/70 of 80, scaled to N = 8
    subject = results["per_subject"][0]
    assert set(subject["scores"]) == {"motion_free_average", "motion_free_average_svr", "gaussian", "gaussian_svr_sigma", "bruno",
                                      "linear"}
    assert len(subject["svr"]["bruno"]["ssim"]) == 3 and subject["svr"]["gaussian"]["error_mm"][0] > 0
    assert subject["svr"]["bruno"]["ssim"][0] == pytest.approx(subject["scores"]["bruno"]["ssim"])
    assert all(0.0 < cell["ssim"] <= 1.0 for cell in subject["scores"].values())
    table = (out / "results.md").read_text()
    assert "| Gaussian average of the moved stacks (initialisation) |" in table and "| 2 |" in table
    assert len(list(out.glob("views_*.png"))) == 2 and (out / "svr_curves.png").stat().st_size > 1000
    rows = (out / "results.csv").read_text().splitlines()
    assert rows[0] == "subject,method,iteration,ssim,cc,error_mm" and len(rows) == 1 + 2 * (6 + 2 * 3)
    again = run_script("motion_experiment.py", *args, "--overwrite")
    assert again.returncode == 0 and json.loads((out / "results.json").read_text()) == results  # same seed, same numbers
    assert_one_line_error(run_script("motion_experiment.py", *args), r"results\.md: output file exists \(pass --overwrite")


@pytest.mark.parametrize("extra, pattern", [
    (("--translation-mm", "-2"), r"--translation-mm -2.0: expected a number >= 0"),
    (("--sigma", "0"), r"--sigma 0.0: expected a number > 0"),
    (("--contexts", "1,99"), r"--contexts '1,99': 99 is out of range, expected indices in \[0, 8\)"),
    (("--samples", "0"), r"--samples 0: expected a number > 0"),
])
def test_motion_experiment_bad_values(tiny_run: Path, tmp_path: Path, extra: tuple[str, ...], pattern: str) -> None:
    result = run_script("motion_experiment.py", "--run", str(tiny_run), "--out", str(tmp_path / "m"), *extra)
    assert_one_line_error(result, pattern)
    assert not (tmp_path / "m").exists()  # refused before anything is written


def test_motion_experiment_on_new_nifti_volumes(tiny_run: Path, tmp_path: Path) -> None:
    folder = tmp_path / "scans"
    folder.mkdir()
    write_nifti(folder / "patient7.nii.gz", head_like((24, 24, 30)), np.diag([2.0, 2.0, 2.0, 1.0]))
    out = tmp_path / "motion"
    result = run_script("motion_experiment.py", "--run", str(tiny_run), "--input", str(folder), "--contexts", "2,5", "--samples", "2",
                        "--svr-iterations", "1", "--law", "sphere", "--out", str(out), "--no-progress")
    assert result.returncode == 0, result.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["source"] == str(folder) and results["contexts"] == [2, 5] and results["settings"]["law"] == "sphere"
    subject = results["per_subject"][0]
    assert subject["subject"] == "patient7" and (out / "views_patient7.png").is_file()
    assert np.all(np.array(subject["spacing_mm"]) > 1.0)  # the slab's voxels, resampled from 2 mm to 8 poses of 16x16
    assert subject["svr"]["gaussian"]["error_mm"][0] == pytest.approx(10.0)  # sphere law: every slice moved by exactly 10 mm
