"""Reconstruction, metrics, baselines and their command-line scripts (issue: reconstruction and evaluation)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bruno.baselines import linear_interpolation, population_mean
from bruno.config import Config, DataConfig, load_config
from bruno.data.nifti import load_nifti
from bruno.data.slices import extract_slices
from bruno.data.subjects import read_split
from bruno.errors import ConfigError
from bruno.experiments.sample_budget import cheapest_within
from bruno.metrics import cross_correlation, psnr, slice_scores, ssim
from bruno.reconstruction import evenly_spread, fetal_contexts, sample_volume, write_volume
from bruno.reconstruction.sampling import decoded_mean
from bruno.runs import RunDir, restore_model
from tests.conftest import REPO, assert_one_line_error, head_like, run_script, train_tiny_run, write_nifti


def test_metrics_on_known_images() -> None:
    rng = np.random.default_rng(0)
    a = rng.random((16, 16))
    assert ssim(a, a) == pytest.approx(1.0) and cross_correlation(a, a) == pytest.approx(1.0)
    assert cross_correlation(a, 1.0 - a) == pytest.approx(-1.0)
    assert cross_correlation(a, 3.0 * a + 2.0) == pytest.approx(1.0)
    assert ssim(a, 1.0 - a) < 0.0
    assert math.isnan(cross_correlation(np.zeros((4, 4)), a[:4, :4]))
    truth = np.stack([a * 255, np.zeros((16, 16))])
    scores = slice_scores(truth, truth)
    np.testing.assert_allclose(scores.ssim, [1.0, 1.0])
    assert scores.cc[0] == pytest.approx(1.0) and math.isnan(scores.cc[1])  # undefined, not 0
    assert psnr(scores.mse) == math.inf
    off = slice_scores(truth + np.array([5.0, 15.0])[:, None, None], truth)  # errors of 5 and 15 grey levels
    np.testing.assert_allclose(off.mse, [25.0, 225.0])
    assert psnr(off.mse) == pytest.approx(10 * math.log10(255 ** 2 / 125.0))  # 27.15 dB
    with pytest.raises(ValueError, match=r"prediction \(2, 16, 16\) and truth \(2, 16, 8\)"):
        slice_scores(truth, truth[..., :8])


def test_linear_interpolation_on_a_ramp() -> None:
    images = np.arange(10, dtype=float)[:, None, None] * np.ones((10, 3, 3)) * 10.0  # slice q has value 10q
    out = linear_interpolation(images, [2, 7])
    np.testing.assert_allclose(out[:, 0, 0], [20, 20, 20, 30, 40, 50, 60, 70, 70, 70])  # constant beyond the ends
    out = linear_interpolation(images, [5])
    np.testing.assert_allclose(out[:, 1, 1], 50.0)  # k = 1 copies the one slice
    np.testing.assert_allclose(linear_interpolation(images, [9, 0, 4])[:, 0, 0], 10 * np.arange(10))
    with pytest.raises(ValueError, match="at least one known slice"):
        linear_interpolation(images, [])


def test_context_rules() -> None:
    assert evenly_spread(1, 80) == [40]
    assert evenly_spread(3, 80) == [20, 40, 60]
    assert evenly_spread(4, 90) == [18, 36, 54, 72]
    assert evenly_spread(0, 10) == []
    assert evenly_spread(9, 9) == list(range(9)) and len(set(evenly_spread(7, 9))) == 7
    assert fetal_contexts(4, 80) == [10, 30, 50, 70] and fetal_contexts(7, 80) == [10, 20, 30, 40, 50, 60, 70]
    with pytest.raises(ConfigError, match=r"fetal context table needs N = 80 and k in \[1, 3, 4, 7\], got N = 80, k = 5"):
        fetal_contexts(5, 80)
    with pytest.raises(ConfigError, match=r"k=11, expected 0 <= k <= N = 10"):
        evenly_spread(11, 10)


def test_a_broken_output_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    """Issue 37: NaN / Inf anywhere, or a std of zero everywhere, is an error naming the file, not a volume."""
    from bruno.errors import NonFiniteOutput
    from bruno.reconstruction import Result, write_reconstruction

    good = np.full((4, 8, 8), 100.0, np.float32)
    nan = good.copy()
    nan[2, 3, 3] = np.nan
    with pytest.raises(NonFiniteOutput, match=r"a\.nii\.gz: 1 of 256 values are NaN or Inf; nothing was written"):
        write_volume(str(tmp_path / "a.nii.gz"), nan, np.eye(4), None)
    result = Result(good, np.zeros_like(good), None, [0], None)
    with pytest.raises(NonFiniteOutput, match=r"s\.nii\.gz \(std\): zero everywhere \(every sample is the same\)"):
        write_reconstruction({"mean": str(tmp_path / "m.nii.gz"), "std": str(tmp_path / "s.nii.gz")}, result, np.eye(4), None)
    assert list(tmp_path.iterdir()) == []  # the mean was not written either: the outputs are checked before any is
    write_reconstruction({"mean": str(tmp_path / "m.nii.gz")}, result._replace(mean=good * 0), np.eye(4), None)  # a black mean can be
    assert (tmp_path / "m.nii.gz").exists()


def test_nifti_round_trip_keeps_world_coordinates(tmp_path: Path) -> None:
    """A reconstruction written with the slab affine puts every voxel where the input had it."""
    affine = np.array([[0.0, 0.0, 2.0, -40.0], [-2.0, 0.0, 0.0, 60.0], [0.0, 2.5, 0.0, -30.0], [0, 0, 0, 1.0]])  # PSR-like
    index = np.stack(np.meshgrid(*[np.arange(n) for n in (20, 24, 18)], indexing="ij"), -1)
    world = index @ affine[:3, :3].T + affine[:3, 3]
    values = 100.0 + 0.8 * world[..., 0] + 0.5 * world[..., 1] + 0.3 * world[..., 2]  # a linear function of position
    volume = load_nifti(str(write_nifti(tmp_path / "in.nii.gz", values.astype(np.float32), affine)))
    config = DataConfig(num_poses=12, image_size=16, slab_fraction=0.8, intensity="window", intensity_range=(0.0, 255.0))
    slices = extract_slices(volume, config)
    write_volume(str(tmp_path / "out.nii.gz"), slices.images, slices.affine, (slices.intensity_low, slices.intensity_high))
    out = nib.load(str(tmp_path / "out.nii.gz"))
    assert nib.aff2axcodes(out.affine) == ("R", "A", "S")
    data = out.get_fdata()
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in data.shape], indexing="ij"), -1)
    out_world = grid @ out.affine[:3, :3].T + out.affine[:3, 3]
    expected = 100.0 + 0.8 * out_world[..., 0] + 0.5 * out_world[..., 1] + 0.3 * out_world[..., 2]
    interior = (slice(3, -3), slice(3, -3), slice(2, -2))
    inside = (data[interior] > 0) & (data[interior] < 255)
    np.testing.assert_allclose(data[interior][inside], expected[interior][inside], atol=1.0)
    write_volume(str(tmp_path / "s.nii.gz"), np.stack([slices.images] * 3), slices.affine, None)
    assert nib.load(str(tmp_path / "s.nii.gz")).shape == (16, 16, 12, 3)
    with pytest.raises(Exception, match=r"out\.nii\.gz: output file exists"):
        write_volume(str(tmp_path / "out.nii.gz"), slices.images, slices.affine, None)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny run trained for 3 steps."""
    return train_tiny_run(tmp_path_factory.mktemp("recon"), max_steps=3)


def test_reconstruct_shapes_and_seeds(run_dir: Path) -> None:
    model, config, step = restore_model(str(run_dir))
    assert step == 3 and isinstance(config, Config)
    images = np.random.default_rng(0).integers(0, 255, (8, 16, 16)).astype(np.uint8)
    a = sample_volume(model, images, [2, 5], num_samples=3, seed=1, progress=False)
    assert a.samples.shape == (3, 8, 16, 16) and a.mean.shape == a.std.shape == (8, 16, 16)
    assert a.samples.min() >= 0 and a.samples.max() <= 255 and a.contexts == [2, 5]
    np.testing.assert_allclose(a.mean, a.samples.mean(0), rtol=1e-5)
    np.testing.assert_allclose(sample_volume(model, images, [2, 5], 3, seed=1, progress=False).samples, a.samples, atol=1e-3)
    assert not np.allclose(sample_volume(model, images, [2, 5], 3, seed=2, progress=False).samples, a.samples)
    assert a.decoded_mean.shape == (8, 16, 16) and 0 <= a.decoded_mean.min() and a.decoded_mean.max() <= 255
    np.testing.assert_allclose(decoded_mean(model, images, [2, 5], seed=1), a.decoded_mean, atol=1e-3)  # without samples
    assert not np.allclose(a.samples[:, 2], images[2])  # the tiny model does not reproduce its contexts...
    kept = sample_volume(model, images, [2, 5], 3, seed=1, progress=False, keep_contexts=True)
    for stack in (kept.mean, kept.decoded_mean, *kept.samples):  # ...with keep_contexts the acquired slices come back unchanged
        np.testing.assert_array_equal(stack[[2, 5]], images[[2, 5]])
    np.testing.assert_array_equal(kept.std[[2, 5]], 0.0)
    np.testing.assert_allclose(kept.samples[:, 3], a.samples[:, 3])
    prior = sample_volume(model, images, [], 2, progress=False)
    assert prior.samples.shape == (2, 8, 16, 16)
    with pytest.raises(ConfigError, match=r"num_samples=0: expected >= 1"):
        sample_volume(model, images, [1], 0)


def test_population_mean(run_dir: Path) -> None:
    from bruno.data.preprocess import load_slice_table

    _, config, _ = restore_model(str(run_dir))
    table = load_slice_table(config)
    atlas = population_mean(read_split(table, "train"))
    train = table.volumes_in("train")
    expected = np.mean([table.read(table.rows_of(int(v))).astype(float) for v in train], axis=0)
    np.testing.assert_allclose(atlas, expected)


def test_scripts_end_to_end_and_bad_inputs(run_dir: Path, tmp_path: Path) -> None:
    scan = write_nifti(tmp_path / "scan.nii.gz", head_like((24, 24, 30)), np.diag([2.0, 2.0, 2.0, 1.0]))
    out = tmp_path / "recon.nii.gz"
    args = ["--run", str(run_dir), "--input", str(scan), "--samples", "2"]
    result = run_script("reconstruct.py", *args, "--contexts", "1,4", "--output", str(out), "--std", str(tmp_path / "std.nii.gz"),
                        "--decoded-mean", str(tmp_path / "decoded.nii.gz"), "--keep-contexts")
    assert result.returncode == 0, result.stderr
    assert nib.load(str(out)).shape == (16, 16, 8) and nib.load(str(tmp_path / "std.nii.gz")).shape == (16, 16, 8)
    std = nib.load(str(tmp_path / "std.nii.gz")).get_fdata()
    assert np.all(std[..., [1, 4]] == 0) and std.max() > 0  # the kept contexts have no spread
    assert nib.load(str(tmp_path / "decoded.nii.gz")).shape == (16, 16, 8)
    assert_one_line_error(run_script("reconstruct.py", *args, "--contexts", "1,4", "--output", str(out)), r"recon\.nii\.gz: output file exists")
    new = str(tmp_path / "new.nii.gz")
    assert_one_line_error(run_script("reconstruct.py", *args, "--contexts", "1,8", "--output", new), r"8 is out of range, expected indices in \[0, 8\)")
    assert_one_line_error(run_script("reconstruct.py", *args, "--contexts", "1,1", "--output", new), r"repeated slice index")
    assert_one_line_error(run_script("reconstruct.py", *args, "--num-contexts", "9", "--output", new), r"k=9, expected 0 <= k <= N = 8")
    assert_one_line_error(run_script("reconstruct.py", "--run", str(run_dir), "--input", str(scan), "--samples", "0",
                                     "--num-contexts", "2", "--output", new), r"--samples .0.: expected an integer >= 1 or .fast.")
    flat = write_nifti(tmp_path / "flat.nii.gz", np.zeros((8, 8, 8), np.float32))
    assert_one_line_error(run_script("reconstruct.py", "--run", str(run_dir), "--input", str(flat), "--num-contexts", "2",
                                     "--output", new), r"flat\.nii\.gz: constant volume")
    assert_one_line_error(run_script("reconstruct.py", "--run", str(tmp_path), "--input", str(scan), "--num-contexts", "2",
                                     "--output", new), r"no config\.yaml, not a run directory")
    assert not Path(new).exists()

    evaluation = tmp_path / "eval"
    result = run_script("evaluate.py", "--run", str(run_dir), "--samples", "2", "--out", str(evaluation))
    assert result.returncode == 0, result.stderr
    assert json.loads((evaluation / "results.json").read_text())["ks"] == [1, 3, 5]  # the default ks below N = 8
    assert "N = 8 poses: k = [1, 3, 5] (of the default [1, 3, 5, 9])" in result.stderr
    assert "| linear interpolation |" in (evaluation / "results.md").read_text()
    report = (evaluation / "results.md").read_text()
    assert "| BRUNO, decoded predictive mean |" in report and "## PSNR (dB)" in report
    assert "| Gaussian volume model (PCA, r = " in report and "Gaussian volume model + GP residual (ℓ = " in report
    assert "| BRUNO, mean image | SSIM | " in report  # paired against the best baseline per k
    assert json.loads((evaluation / "results.json").read_text())["table"]["pca_gp"]["3"]["psnr"] > 0
    for name in ("results.csv", "results.json", "ssim_curves.png", "reliability.png", "montage.png"):
        assert (evaluation / name).stat().st_size > 100
    forecast = json.loads((evaluation / "results.json").read_text())["forecast"]
    forecasters = [f"{key}_{law}" for key in ("atlas_gp_forecast", "pca_forecast", "pca_gp_forecast")
                   for law in ("gaussian", "samples")]
    assert sorted(forecast) == sorted(["bruno_samples", "pca_gaussian", "pca_samples", *forecasters])  # every distribution
    for row, cells in forecast.items():
        for k, cell in cells.items():
            assert len(cell["coverage"]) == 10 and all(0 <= c <= 1 for c in cell["coverage"]) and cell["crps"] > 0, (row, k)
            assert np.all(np.diff(cell["coverage"]) >= 0), (row, k)  # wider intervals cover at least as much
    assert 0 < forecast["bruno_samples"]["3"]["nll"] < 16 and 0 < forecast["pca_gaussian"]["3"]["nll"] < 16  # bits/dim
    assert math.isnan(forecast["pca_samples"]["3"]["nll"])  # the density's NLL sits on its closed-form row
    assert "### CRPS (grey levels)" in report and "| BRUNO, 2 samples |" in report
    results = json.loads((evaluation / "results.json").read_text())
    assert results["forecast_ours"] == ["bruno_samples"] and "pca_gp_forecast_gaussian" in results["forecast_rivals"]
    assert "| BRUNO, samples | CRPS (grey levels) | " in report  # paired against the best classical forecaster per k
    assert_one_line_error(run_script("evaluate.py", "--run", str(run_dir), "--contexts-list", "1,3", "--out", str(evaluation)),
                          r"results\.md: output file exists")

    baselines_only = run_script("evaluate.py", "--config", str(run_dir / "config.yaml"), "--contexts-list", "2", "--out",
                                str(tmp_path / "e3"), "--max-subjects", "1")
    assert baselines_only.returncode == 0, baselines_only.stderr
    assert "\n1 subject; mean over" in (tmp_path / "e3" / "results.md").read_text()  # not "1 subjects"
    assert "BRUNO" not in (tmp_path / "e3" / "results.md").read_text() and (tmp_path / "e3" / "montage.png").exists()
    assert_one_line_error(run_script("evaluate.py", "--config", str(run_dir / "config.yaml")), r"--config: pass --out too")

    classical = ["--config", str(run_dir / "config.yaml"), "--input", str(scan), "--contexts", "1,4"]
    pca = run_script("reconstruct.py", *classical, "--method", "pca", "--samples", "3", "--output", str(tmp_path / "pca.nii.gz"),
                     "--std", str(tmp_path / "pca_std.nii.gz"), "--samples-out", str(tmp_path / "pca_samples.nii.gz"))
    assert pca.returncode == 0, pca.stderr
    pca_std = nib.load(str(tmp_path / "pca_std.nii.gz")).get_fdata()
    assert np.all(pca_std[..., [1, 4]] == 0) and pca_std.min(axis=(0, 1))[0] > 0
    assert nib.load(str(tmp_path / "pca_samples.nii.gz")).shape == (16, 16, 8, 3)
    assert_one_line_error(run_script("reconstruct.py", *classical, "--method", "atlas_gp", "--output", new, "--std", str(tmp_path / "s.nii")),
                          r"s\.nii: method atlas_gp has no uncertainty map")
    assert_one_line_error(run_script("reconstruct.py", "--config", str(run_dir / "config.yaml"), "--input", str(scan), "--num-contexts", "0",
                                     "--method", "linear", "--output", new), r"method linear: needs at least 1 given slice")
    assert_one_line_error(run_script("reconstruct.py", *classical, "--output", new), r"--method bruno needs --run")
    latent = run_script("reconstruct.py", "--run", str(run_dir), "--input", str(scan), "--contexts", "1,4", "--method", "latent_pca_gp",
                        "--output", str(tmp_path / "latent.nii.gz"))
    assert latent.returncode == 0, latent.stderr
    assert nib.load(str(tmp_path / "latent.nii.gz")).shape == (16, 16, 8)
    assert not Path(new).exists()

    prior = run_script("sample_prior.py", str(run_dir), "--samples", "2", "--output", str(tmp_path / "atlas.nii.gz"))
    assert prior.returncode == 0, prior.stderr
    assert (tmp_path / "atlas.png").exists() and nib.load(str(tmp_path / "atlas.nii.gz")).shape == (16, 16, 8)


def test_atlas_reformats_use_the_voxel_spacing(run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sample_prior.py draws atlas.png's sagittal and coronal reformats at the table's voxel shape."""
    import runpy
    import sys

    import bruno.plots
    from bruno.data.nifti import affine_spacing
    from bruno.data.preprocess import load_slice_table

    seen: dict[str, object] = {}
    monkeypatch.setattr(bruno.plots, "save_slice_montage", lambda *args, **kwargs: seen.update(kwargs))
    monkeypatch.setattr(sys, "argv", ["sample_prior.py", str(run_dir), "--samples", "2", "--no-progress",
                                      "--output", str(tmp_path / "atlas.nii.gz")])
    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    runpy.run_path(str(REPO / "scripts/sample_prior.py"), run_name="__main__")
    table = load_slice_table(restore_model(str(run_dir))[1])
    expected = affine_spacing(table.info(int(table.volumes_in("train")[0])).affine)
    assert seen["spacing"] == expected and expected[2] > expected[0]  # thick poses: not the default (1, 1, 1)


def test_run_without_checkpoint(tmp_path: Path) -> None:
    from bruno.errors import RunDirError

    config = load_config(REPO / "config_rnn/tiny.yaml")
    RunDir(str(tmp_path / "run")).prepare(config, False, False)  # config.yaml, but training never ran
    with pytest.raises(RunDirError, match=r"run: no checkpoint found"):
        restore_model(str(tmp_path / "run"))


def test_cheapest_sample_count_within_tolerance() -> None:
    def study(diffs: dict[int, list[float]]) -> dict:
        return {"counts": [5, 10, 20], "ks": list(diffs),
                "table": {str(k): {str(s): {"ssim_diff": d} for s, d in zip([5, 10, 20], v)} for k, v in diffs.items()}}

    assert cheapest_within(study({1: [-0.02, -0.004, 0.0], 5: [-0.003, -0.001, 0.0]})) == 10  # k = 1 decides
    assert cheapest_within(study({1: [-0.001, 0.0, 0.0]})) == 5
    assert cheapest_within(study({1: [-0.02, -0.01, 0.0]}), tolerance=0.001) == 20


def test_sample_count_study_script(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "counts"
    result = run_script("evaluate.py", "--run", str(run_dir), "--split", "val", "--contexts-list", "1,3", "--sample-counts", "4,1,2",
                        "--out", str(out), "--no-progress")
    assert result.returncode == 0, result.stderr
    study = json.loads((out / "sample_counts.json").read_text())
    assert study["counts"] == [1, 2, 4] and study["ks"] == [1, 3] and study["num_subjects"] == 2
    assert len(study["per_subject"]) == 4
    for k in ("1", "3"):
        assert study["table"][k]["4"]["ssim_diff"] == 0.0 and study["table"][k]["4"]["ssim_diff_max"] == 0.0
        ssim_values = [study["table"][k][s]["ssim"] for s in ("1", "2", "4")]
        assert all(-1.0 <= v <= 1.0 for v in ssim_values) and len(set(ssim_values)) == 3  # the prefixes differ
        subject_mean = np.mean([r["ssim"]["1"] - r["ssim"]["4"] for r in study["per_subject"] if r["k"] == int(k)])
        assert study["table"][k]["1"]["ssim_diff"] == pytest.approx(subject_mean)
    text = (out / "sample_counts.md").read_text()
    assert "| 4 | " in text and "Cheapest S within 0.005 SSIM of S = 4 for every k" in text
    assert_one_line_error(run_script("evaluate.py", "--run", str(run_dir), "--contexts-list", "1", "--sample-counts", "5",
                                     "--out", str(tmp_path / "c2")),
                          r"--sample-counts '5': expected at least two comma-separated integers >= 1")


def test_latent_volume_model_on_a_tiny_run(run_dir: Path) -> None:
    from bruno.data.preprocess import load_slice_table
    from bruno.errors import DataFileError
    from bruno.reconstruction.latent import load_latent_volume_model
    from bruno.runs import RunDir

    model, config, _ = restore_model(str(run_dir))
    table = load_slice_table(config)
    method, settings = load_latent_volume_model(model, table, str(run_dir), progress=False)
    assert (run_dir / RunDir.LATENT_VOLUME).is_file() and settings["chosen"] == max(settings["grid"], key=lambda g: g["val_ssim"])
    images = table.read(table.rows_of(int(table.volumes_in("test")[0])))
    every = list(range(8))
    latents = method.encoder(images, every)
    # All slices acquired: the GP residual reproduces every latent, so decoding inverts the encoding.
    np.testing.assert_allclose(method.latent_estimate(images, every), latents, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(method.decode(latents), images, atol=0.05)
    estimate = method.reconstruct(images, [2, 5])
    assert estimate.mean.shape == (8, 16, 16) and estimate.std is None
    np.testing.assert_array_equal(estimate.mean[[2, 5]], images[[2, 5]])
    prior = method.latent_estimate(images, [])  # no slices: the latent mean volume
    np.testing.assert_allclose(prior, method.latent_model.mean[..., 0])
    again, _ = load_latent_volume_model(model, table, str(run_dir), progress=False)  # reads the stored choice
    np.testing.assert_allclose(again.reconstruct(images, [2, 5]).mean, estimate.mean)
    assert settings["fitted_to"]["flow_weights_sha1"] == method.encoder.fingerprint()
    variable = model.flow.variables[0]  # another flow (say, trained on): the stored choice is refused, not used
    kept = variable.numpy()
    variable.assign(kept + 1.0)
    try:
        with pytest.raises(DataFileError, match=r"latent_volume\.json: chosen for other flow weights than now"):
            load_latent_volume_model(model, table, str(run_dir), progress=False)
    finally:
        variable.assign(kept)


def test_reconstruct_from_acquired_slices_only(run_dir: Path, tmp_path: Path) -> None:
    """Sparse stacks and single-slice files through reconstruct.py: world placement, the PNG, errors, nothing half-written."""
    affine = np.diag([2.0, 2.0, 6.0, 1.0])
    affine[:3, 3] = [-20.0, -20.0, 3.0]
    stack = write_nifti(tmp_path / "acquired.nii.gz", head_like((20, 20, 3), seed=2), affine)  # slices at 3, 9, 15 mm
    out = tmp_path / "recon.nii.gz"
    base = ["--run", str(run_dir), "--samples", "2"]
    result = run_script("reconstruct.py", *base, "--input", str(stack), "--slab-mm", "0", "24", "--output", str(out),
                        "--std", str(tmp_path / "std.nii.gz"), "--keep-contexts")
    assert result.returncode == 0, result.stderr
    image = nib.load(str(out))
    assert image.shape == (16, 16, 8)
    np.testing.assert_allclose(image.affine[2, 2], 3.0)  # 24 mm over 8 poses
    np.testing.assert_allclose(image.affine[2, 3], 1.5)  # pose 0 centred half a pose above the slab's end
    assert "poses [1, 3, 5]" in result.stderr and (tmp_path / "recon.png").stat().st_size > 1000
    std = nib.load(str(tmp_path / "std.nii.gz")).get_fdata()
    assert np.all(std[..., [1, 3, 5]] == 0) and std.max() > 0  # the acquired slices are kept at their poses
    singles = []
    for z in (1, 2):
        one = affine.copy()
        one[2, 3] = 3.0 + 6.0 * z
        singles.append(str(write_nifti(tmp_path / f"s{z}.nii.gz", head_like((20, 20, 1), seed=z), one)))
    result = run_script("reconstruct.py", *base, "--input", *singles, "--poses", "3,5", "--output", str(tmp_path / "r2.nii.gz"))
    assert result.returncode == 0, result.stderr
    np.testing.assert_allclose(nib.load(str(tmp_path / "r2.nii.gz")).affine[2, 2], 3.0)  # fitted: 6 mm over 2 poses
    wide = affine.copy()
    wide[2, 2] = 36.0  # two of tiny.yaml's 18 mm poses apart
    spread = write_nifti(tmp_path / "spread.nii.gz", head_like((20, 20, 3), seed=3), wide)
    estimated = run_script("reconstruct.py", *base, "--input", str(spread), "--output", str(tmp_path / "r3.nii.gz"))
    assert estimated.returncode == 0, estimated.stderr
    assert "estimated poses [" in estimated.stderr and "margin inf" not in estimated.stderr
    new = tmp_path / "new.nii.gz"
    assert_one_line_error(run_script("reconstruct.py", *base, "--input", str(stack), "--slab-mm", "0", "10", "--output", str(new)),
                          r"acquired\.nii\.gz\[2\]: at 15\.0 mm, outside the slab 0\.\.10 mm")
    assert_one_line_error(run_script("reconstruct.py", *base, "--input", str(stack), "--output", str(new)),
                          r"cannot estimate the poses: no placement of slices at 3\.0, 9\.0, 15\.0 mm fits 8 poses")
    assert_one_line_error(run_script("reconstruct.py", *base, "--input", str(stack), "--poses", "1,3", "--output", str(new)),
                          r"poses \[1, 3\]: 2 given for 3 acquired slices")
    assert_one_line_error(run_script("reconstruct.py", *base, "--input", *singles, "--contexts", "1,2", "--output", str(new)),
                          r"--input: 2 files; --contexts/--num-contexts take one whole volume")
    assert not new.exists() and not (tmp_path / "new.png").exists()


@pytest.mark.parametrize("case, pattern", [
    ("4d", r"4d\.nii\.gz: expected a 3D volume"),
    ("oblique", r"oblique\.nii\.gz\[0\]: the slices are tilted 20\.0° from axial"),
    ("not_parallel", r"b\.nii\.gz: not parallel to"),
    ("duplicate", r"b\.nii\.gz: at the same position as"),
])
def test_reconstruct_refuses_bad_acquisitions_and_writes_nothing(run_dir: Path, tmp_path: Path, case: str, pattern: str) -> None:
    data = head_like((20, 20, 3), seed=1)
    tilted = np.eye(4)
    angle = np.radians(20.0 if case == "oblique" else 3.0)
    tilted[1:3, 1:3] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    if case == "4d":
        inputs = [write_nifti(tmp_path / "4d.nii.gz", np.stack([data, data], -1))]
    elif case == "oblique":
        inputs = [write_nifti(tmp_path / "oblique.nii.gz", data, tilted)]
    else:
        inputs = [write_nifti(tmp_path / "a.nii.gz", data[..., :1]),
                  write_nifti(tmp_path / "b.nii.gz", data[..., 1:2], tilted if case == "not_parallel" else None)]
    out = tmp_path / "out" / "recon.nii.gz"
    out.parent.mkdir()
    assert_one_line_error(run_script("reconstruct.py", "--run", str(run_dir), "--input", *map(str, inputs), "--samples", "2",
                                     "--output", str(out), "--std", str(tmp_path / "out" / "std.nii.gz")), pattern)
    assert list(out.parent.iterdir()) == []
