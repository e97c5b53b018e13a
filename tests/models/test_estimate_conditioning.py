"""BRUNO conditioned on the classical estimate (SPEC §9.5): each slice's estimate comes from its sequence's contexts,
cross-fitted by train subject; the flow needs it exactly when configured; a run stores the test-time estimate and a
copy of the run alone reconstructs with it."""
from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tensorflow as tf

from bruno.baselines import CrossFittedEstimate
from bruno.config import Config, override
from bruno.data.preprocess import load_slice_table
from bruno.data.subjects import read_split
from bruno.errors import ConfigError, RunDirError
from bruno.models import ConditionalBruno
from bruno.runs import RunDir, make_deterministic, restore_model
from tests.conftest import head_like, run_script, tiny_config, write_nifti


def conditioned(folder: Path) -> Config:
    config = override(tiny_config(folder), "model.estimate", use=True, rank=3, noise_variance=300.0, length=2.0, rho=0.0,
                      folds=2)
    return override(config, "model.process", kind="pose_gaussian")


def test_estimates_come_from_the_contexts_and_a_pca_that_never_saw_the_subject(tmp_path: Path) -> None:
    config = conditioned(tmp_path)
    train = read_split(load_slice_table(config, progress=False), "train").astype(np.float64)
    estimator = CrossFittedEstimate(train, 3, 300.0, 2.0, 0.0, folds=2)
    model = ConditionalBruno.from_config(config)
    model.attach_estimator(estimator)
    order = np.array([[5, 1, 6, 2], [0, 7, 3, 4]])
    poses = np.eye(8, dtype=np.float32)[order]
    images = np.stack([train[s][order[i]] for i, s in enumerate((0, 1))])[..., None].astype(np.float32)
    estimates = model.sequence_estimates(images, poses, 2, np.array([0, 1]))
    for i, subject in enumerate((0, 1)):
        expected = estimator.estimate(train[subject], order[i, :2], subject)[order[i]]
        np.testing.assert_allclose(estimates[i, ..., 0], expected, rtol=1e-5)
    np.testing.assert_allclose(estimates[:, :2], images[:, :2], atol=1e-3)  # at a context: the slice itself
    new = model.sequence_estimates(images, poses, 2)  # new subjects: every train subject's PCA
    np.testing.assert_allclose(new[0, ..., 0], estimator.estimate(train[0], order[0, :2])[order[0]], rtol=1e-5)
    atlas = model.sequence_estimates(images, poses, 0)
    np.testing.assert_allclose(atlas[0, ..., 0], estimator.full.model.mean[order[0]], rtol=1e-5)
    model.initialize(tf.constant(images + 0.5), tf.constant(poses), tf.constant(estimates))
    with pytest.raises(ValueError, match="expected them exactly when model.estimate.use is set"):
        model.log_prob(tf.constant(images + 0.5), tf.constant(poses), 2)
    scored = model.log_prob(tf.constant(images + 0.5), tf.constant(poses), 2, estimates=tf.constant(estimates)).log_prob
    other = model.log_prob(tf.constant(images + 0.5), tf.constant(poses), 2, estimates=tf.constant(atlas)).log_prob
    assert scored.shape == (2, 2) and np.abs(scored.numpy() - other.numpy()).max() > 1e-3  # the estimate matters
    z, _ = model.encode(tf.constant(images + 0.5), tf.constant(poses), estimates=tf.constant(estimates))
    decoded = model._decode(tf.reshape(z, [-1, 256]), tf.reshape(tf.constant(poses), [-1, 8]),
                            tf.reshape(tf.constant(estimates), [-1, 16, 16, 1]))
    np.testing.assert_allclose(decoded.numpy().reshape(images.shape), images + 0.5, atol=1e-3)
    # the conditional NLL (from the predictive the samples come from) = each target scored as the one target of
    # the sequence (contexts, it) with its estimate from those contexts
    from bruno.reconstruction import ModelSampling
    from bruno.reconstruction.method import dequantised
    volume = train[2]
    nll = ModelSampling(model).conditional_nll(volume, [6, 1], seed=4)
    noisy, one_hot = dequantised(volume, 4).astype(np.float32), np.eye(8, dtype=np.float32)
    expected = []
    for q in (0, 2, 3, 4, 5, 7):
        sequence, sequence_poses = noisy[[1, 6, q]][None, ..., None], one_hot[[1, 6, q]][None]
        inputs = model.log_prob_inputs(sequence, sequence_poses, 2)
        log_prob = model.log_prob(tf.constant(sequence), tf.constant(sequence_poses), 2, **inputs).log_prob
        expected.append(-float(log_prob[0, 0]) / (256 * np.log(2)))
    np.testing.assert_allclose(nll, expected, rtol=1e-5)


@pytest.mark.slow
def test_a_conditioned_run_stores_its_estimate_and_a_copy_reconstructs(tmp_path: Path) -> None:
    from bruno.commands.train import train_run

    config = override(conditioned(tmp_path / "data"), "train", max_steps=10, validate_every=5, checkpoint_every=5)
    (tmp_path / "data").mkdir()
    make_deterministic(0)
    train_run(config, str(tmp_path / "run"), resume=False, overwrite=False, progress=False)
    run = RunDir(str(tmp_path / "run"))
    stored = run.estimate()
    full = CrossFittedEstimate(read_split(load_slice_table(config, progress=False), "train"), 3, 300.0, 2.0, 0.0,
                               folds=2).full
    images = head_like((8, 16, 16), seed=3).astype(np.float64)
    np.testing.assert_allclose(stored(images, [1, 5]), full(images, [1, 5]), rtol=1e-4, atol=1e-3)  # float32 on disk
    copy = tmp_path / "elsewhere" / "run"
    shutil.copytree(tmp_path / "run", copy)
    shutil.rmtree(tmp_path / "data")  # no table within reach
    scan = write_nifti(tmp_path / "scan.nii.gz", head_like((24, 24, 30)), np.diag([2.0, 2.0, 2.0, 1.0]))
    out = tmp_path / "recon.nii.gz"
    result = run_script("reconstruct.py", "--run", str(copy), "--input", str(scan), "--contexts", "1,4", "--samples", "2",
                        "--output", str(out), "--std", str(tmp_path / "std.nii.gz"))
    assert result.returncode == 0, result.stderr
    assert nib.load(str(out)).shape == (16, 16, 8) and nib.load(str(tmp_path / "std.nii.gz")).get_fdata().max() > 0
    (copy / RunDir.ESTIMATE).write_bytes(b"not an npz")
    with pytest.raises(RunDirError, match=r"estimate\.npz: not a readable classical estimate"):
        restore_model(str(copy))


def test_estimate_settings_left_unset_come_from_the_tables_classical_search(tmp_path: Path) -> None:
    from bruno.commands.train import with_estimate_settings
    from bruno.reconstruction.classical import stored_search

    config = override(override(tiny_config(tmp_path), "model.estimate", use=True, length=3.0), "model.process",
                      kind="pose_gaussian")
    resolved = with_estimate_settings(config, progress=False)
    chosen = stored_search(load_slice_table(config, progress=False)).load()["chosen"]  # made by the call above
    e = resolved.model.estimate
    assert (e.rank, e.noise_variance, e.rho) == (chosen["pca"]["rank"], chosen["pca"]["noise_variance"], chosen["pca_gp"]["rho"])
    assert e.length == 3.0  # given: kept
    assert with_estimate_settings(resolved) == resolved
    from bruno.training import Trainer
    RunDir(str(tmp_path / "run")).prepare(config, False, False)
    with pytest.raises(ConfigError, match=r"model\.estimate\.rank is not set: the train command takes it"):
        Trainer(config, str(tmp_path / "run"), progress=False)



def test_the_blend_moves_the_mean_image_and_every_sample_towards_the_estimate(tmp_path: Path) -> None:
    config = conditioned(tmp_path)
    train = read_split(load_slice_table(config, progress=False), "train").astype(np.float64)
    model = ConditionalBruno.from_config(config)
    model.attach_estimator(CrossFittedEstimate(train, 3, 300.0, 2.0, 0.0, folds=2))
    tf.random.set_seed(0)
    order = np.array([[5, 1, 6, 2], [0, 7, 3, 4]])
    poses = np.eye(8, dtype=np.float32)[order]
    images = np.stack([train[s][order[i]] for i, s in enumerate((0, 1))])[..., None].astype(np.float32) + 0.5
    model.initialize(tf.constant(images), tf.constant(poses), tf.constant(model.sequence_estimates(images - 0.5, poses, 2)))
    volume = train[2].astype(np.float32) + 0.5
    one_hot = np.eye(8, dtype=np.float32)
    contexts, targets = [6, 1], [0, 2, 3, 4, 5, 7]
    args = (tf.constant(volume[contexts][None, ..., None]), tf.constant(one_hot[contexts][None]),
            tf.constant(one_hot[targets][None]))
    acquired = np.where(np.isin(np.arange(8), contexts)[:, None, None], volume, 0.0)  # what the estimate reads
    estimate = model.estimator.full(acquired, contexts)[targets]
    decoded = model.decode_predictive_mean(*args).numpy()[0, ..., 0]
    samples = model.sample(*args, num_samples=3, seed=5).images.numpy()[:, 0, ..., 0]
    nll = model.conditional_log_prob(*args[:2], tf.constant(volume[targets][None, ..., None]), args[2]).numpy()[0]
    assert model.blend_weight(3) == 1.0 and model.deterministic_label == "decoded predictive mean"
    model.set_blend({1: 0.0, 4: 0.3})
    try:
        w = 0.3 * np.log(2) / np.log(4)  # k = 2: linear in log k between (1, 0) and (4, .3)
        assert [model.blend_weight(k) for k in (0, 1, 4, 9)] == [1.0, 0.0, 0.3, 0.3]
        assert model.blend_weight(2) == pytest.approx(w)
        assert model.deterministic_label == "decoded mean blended with the estimate"
        blended = w * decoded + (1 - w) * estimate
        np.testing.assert_allclose(model.decode_predictive_mean(*args).numpy()[0, ..., 0], np.clip(blended, 0, 256),
                                   atol=2e-3)
        shift = (1 - w) * (estimate - decoded)
        moved = model.sample(*args, num_samples=3, seed=5).images.numpy()[:, 0, ..., 0]
        np.testing.assert_allclose(moved, np.clip(samples + shift, 0, 256), atol=2e-3)
        # the density scored is the flow's own (the moved law's support leaves the data range: see conditional_log_prob)
        np.testing.assert_allclose(model.conditional_log_prob(*args[:2], tf.constant(volume[targets][None, ..., None]), args[2]),
                                   nll[None], rtol=1e-6)
        model.set_blend({2: 1.0})
        np.testing.assert_allclose(model.decode_predictive_mean(*args).numpy()[0, ..., 0], decoded, atol=1e-4)
        for bad in ({1: 1.5}, {0: 0.5}, {1: float("nan")}):
            with pytest.raises(ValueError, match="expected k >= 1 and a weight in"):
                model.set_blend(bad)
    finally:
        model.set_blend({})
    plain = ConditionalBruno.from_config(tiny_config(tmp_path))
    with pytest.raises(ValueError, match="needs a flow conditioned on it"):
        plain.set_blend({1: 0.5})
