"""Training semantics on tiny.yaml: init pass, schedules, TF1 RMSProp, resume, NaN, interrupts, bad input."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from bruno.config import Config, override
from bruno.data.subjects import read_split
from bruno.data.table import SliceTable
from bruno.errors import ConfigError, DataFileError, RunDirError, TrainingDiverged
from bruno.files import SEARCH_FORMAT
from bruno.models.encoder import SliceEncoder
from bruno.reconstruction.population_state import SHRINKAGES, fit_population_state
from bruno.runs import RunDir, read_population_state, restore_model, write_population_state
from bruno.training import TrainingInterrupted, learning_rate_at, num_context_at, process_grad_scale
from bruno.training.optimizers import AdamTF1, RMSPropTF1
from tests.conftest import REPO, assert_one_line_error, losses, run_script, trainer


def test_schedules() -> None:
    assert learning_rate_at(0, 1e-3, 0.999995) == pytest.approx(1e-3 * 0.999995)
    assert learning_rate_at(199_999, 1e-3, 0.999995) == pytest.approx(0.368e-3, rel=1e-3)
    schedule = {0: 0.0, 500: 0.5, 1000: 1.0}
    assert [process_grad_scale(s, schedule) for s in (0, 499, 500, 999, 1000, 10**6)] == [0, 0, 0.5, 0.5, 1, 1]


def test_rmsprop_has_tf1_semantics() -> None:
    """Against the formula and against tf.compat.v1.train.RMSPropOptimizer on f(θ) = Σ aθ²/2."""
    a = tf.constant([1.0, 4.0, 0.25])
    ours, reference = tf.Variable([1.0, -2.0, 3.0]), tf.Variable([1.0, -2.0, 3.0])
    optimizer = RMSPropTF1()
    optimizer.build([ours])
    v1 = tf.compat.v1.train.RMSPropOptimizer(0.01, decay=0.9, momentum=0.0, epsilon=1e-10)
    theta, ms = np.array([1.0, -2.0, 3.0]), np.ones(3)
    for _ in range(5):
        optimizer.apply([a * ours], [ours], tf.constant(0.01))
        v1.apply_gradients([(a * reference, reference)])
        g = a.numpy() * theta
        ms = 0.9 * ms + 0.1 * g**2
        theta = theta - 0.01 * g / np.sqrt(ms + 1e-10)
    np.testing.assert_allclose(ours.numpy(), theta, rtol=1e-5)
    np.testing.assert_allclose(ours.numpy(), reference.numpy(), rtol=1e-5)
    # Keras' RMSprop (accumulator at zero) takes a ~3x larger first step: the difference matters.
    first = RMSPropTF1()
    x = tf.Variable([1.0])
    first.build([x])
    first.apply([tf.constant([1.0])], [x], tf.constant(0.01))
    assert 1.0 - x.numpy()[0] == pytest.approx(0.01 / np.sqrt(0.9 + 0.1), rel=1e-6)


def test_adam_matches_tf1() -> None:
    ours, reference = tf.Variable([1.0, -2.0]), tf.Variable([1.0, -2.0])
    optimizer = AdamTF1()
    optimizer.build([ours])
    v1 = tf.compat.v1.train.AdamOptimizer(0.01)
    for _ in range(4):
        optimizer.apply([2.0 * ours], [ours], tf.constant(0.01))
        v1.apply_gradients([(2.0 * reference, reference)])
    np.testing.assert_allclose(ours.numpy(), reference.numpy(), rtol=1e-5)


def test_step_zero_changes_only_the_init_variables(tiny: Config, tmp_path: Path) -> None:
    t = trainer(tiny, tmp_path / "run")
    before = [v.numpy().copy() for v in t.model.variables]
    slots = [s.numpy().copy() for group in t.optimizer.slots for s in group]
    t._initialize()
    changed = [v.name for v, old in zip(t.model.variables, before) if not np.array_equal(v.numpy(), old)]
    assert changed and all(name.endswith(("/g:0", "/b:0")) for name in changed)  # weight-norm gains and biases
    assert int(t.step) == 0 and int(t.optimizer.iterations) == 0
    for old, group in zip(slots, [s for g in t.optimizer.slots for s in g]):
        np.testing.assert_array_equal(old, group.numpy())


def test_loss_decreases_on_a_fixed_batch(tiny: Config, tmp_path: Path) -> None:
    t = trainer(tiny, tmp_path / "run", learning_rate=3e-3)
    t._initialize()
    batch = t.sampler.next_batch()
    images, poses = tf.constant(batch["images"]), tf.constant(batch["poses"])
    values = [float(t._train_step(images, poses, tf.constant(3e-3), tf.constant(1.0), 3)[0]) for _ in range(30)]
    assert values[-1] < 0.8 * values[0]


def test_schedule_scales_the_process_gradients(tiny: Config, tmp_path: Path) -> None:
    t = trainer(tiny, tmp_path / "run")
    t._initialize()
    batch = t.sampler.next_batch()
    assert sum("prior_" in v.name for v in t.update.variables) == 3
    before = [v.numpy().copy() for v in t.update.variables]
    t._train_step(tf.constant(batch["images"]), tf.constant(batch["poses"]), tf.constant(1e-3), tf.constant(0.0), 3)
    moved = [not np.array_equal(v.numpy(), b) for v, b in zip(t.update.variables, before)]
    is_process = ["prior_" in v.name for v in t.update.variables]
    assert not any(m and p for m, p in zip(moved, is_process))  # scale 0: the process is frozen
    assert sum(m and not p for m, p in zip(moved, is_process)) > 10  # the flow is not
    t._train_step(tf.constant(batch["images"]), tf.constant(batch["poses"]), tf.constant(1e-3), tf.constant(0.5), 3)
    assert all(not np.array_equal(v.numpy(), b) for v, b, p in zip(t.update.variables, before, is_process) if p)


def test_rate_scales_multiply_the_step_per_variable() -> None:
    for optimizer in (RMSPropTF1(), AdamTF1()):
        x, y = tf.Variable([1.0]), tf.Variable([1.0])
        optimizer.build([x, y])
        optimizer.apply([tf.constant([1.0]), tf.constant([1.0])], [x, y], tf.constant(0.01), rate_scales=[1.0, 10.0])
        assert 1.0 - y.numpy()[0] == pytest.approx(10.0 * (1.0 - x.numpy()[0]), rel=1e-5)


@pytest.mark.slow
def test_varying_contexts_and_the_pose_process_train(tiny: Config, tmp_path: Path) -> None:
    """num_context_min: n_c per step is seeded by (seed, step); the SPEC §8 variant trains and resumes exactly."""
    train = override(tiny, "train", num_context_min=1, process_grad_schedule={0: 1.0}, process_learning_rate_scale=10.0).train
    drawn = [num_context_at(step, train) for step in range(1, 200)]
    assert set(drawn) == {1, 2, 3} and drawn == [num_context_at(step, train) for step in range(1, 200)]
    assert num_context_at(5, tiny.train) == 3
    config = override(tiny, "model.process", kind="pose_student_t", kernel="rbf")
    settings = dict(num_context_min=1, process_grad_schedule={0: 1.0}, process_learning_rate_scale=10.0,
                    checkpoint_every=3, log_every=1)
    full = trainer(config, tmp_path / "full", **settings)
    assert sum("prior_" in v.name for v in full.update.variables) == 5  # var, corr, nu, length, atlas
    atlas = full.model.process.prior_atlas.numpy().copy()
    full.train(max_steps=6)
    assert not np.array_equal(full.model.process.prior_atlas.numpy(), atlas)
    trainer(config, tmp_path / "split", **settings).train(max_steps=3)
    trainer(config, tmp_path / "split", resume=True, **settings).train(max_steps=6)
    np.testing.assert_allclose([v for _, v in losses(tmp_path / "split")], [v for _, v in losses(tmp_path / "full")], rtol=1e-5)


@pytest.mark.slow
def test_resume_reproduces_an_uninterrupted_run(tiny: Config, tmp_path: Path) -> None:
    trainer(tiny, tmp_path / "full", checkpoint_every=3, log_every=1).train(max_steps=8)
    trainer(tiny, tmp_path / "split", checkpoint_every=3, log_every=1).train(max_steps=5)
    # The process ends at step 5 (checkpoint written at the end); a new process resumes from it.
    trainer(tiny, tmp_path / "split", resume=True, checkpoint_every=3, log_every=1).train(max_steps=8)
    full, split = losses(tmp_path / "full"), losses(tmp_path / "split")
    assert [s for s, _ in full] == list(range(1, 9)) == [s for s, _ in split]
    assert full == split  # bit-identical on CPU


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny: Config, tmp_path: Path) -> None:
    t = trainer(tiny, tmp_path / "run", checkpoint_every=2)
    draw = t.sampler.next_batch
    calls = {"n": 0}

    def poisoned(whole: bool = False) -> dict[str, np.ndarray]:
        batch = draw(whole)
        calls["n"] += 1
        if calls["n"] == 6:  # batch 0 is the init; this is step 5
            batch["images"] = np.full_like(batch["images"], np.nan)
        return batch

    t.sampler.next_batch = poisoned  # type: ignore[method-assign]
    with pytest.raises(TrainingDiverged, match=r"step 5: training loss is nan; stopped\. The last good checkpoint: .*ckpt-4"):
        t.train(max_steps=10)
    assert t.manager.latest_checkpoint.endswith("ckpt-4")


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_inside_a_step_saves_that_step_and_resumes_exactly(tiny: Config, tmp_path: Path, signum: int) -> None:
    """The signal arrives while step 4 runs: the step completes, a checkpoint of step 4 (with the data stream
    after its batch and the losses not yet logged) is written, and the resumed run matches an uninterrupted one."""
    settings = dict(checkpoint_every=100, log_every=3, validate_every=3)
    trainer(tiny, tmp_path / "full", **settings).train(max_steps=8)
    t = trainer(tiny, tmp_path / "split", **settings)
    step, handler = t._train_step, signal.getsignal(signal.SIGINT)  # SIG_IGN in a job started with & by a shell

    def signalled(*args: object) -> object:
        result = step(*args)  # type: ignore[arg-type]
        if int(t.step.numpy()) == 3:  # inside step 4 (its step is set once it completes)
            os.kill(os.getpid(), signum)
        return result

    t._train_step = signalled  # type: ignore[method-assign]
    with pytest.raises(TrainingInterrupted) as interrupted:
        t.train(max_steps=8)
    assert interrupted.value.signum == signum and t.manager.latest_checkpoint.endswith("ckpt-4")
    assert signal.getsignal(signal.SIGINT) is handler  # handlers put back
    resumed = trainer(tiny, tmp_path / "split", resume=True, **settings)
    assert len(t._pending) == 1 and resumed._pending == t._pending  # step 4's loss, not yet logged
    resumed.train(max_steps=8)
    assert losses(tmp_path / "split") == losses(tmp_path / "full")  # bit-identical on CPU
    assert [r["loss"] for r in RunDir(str(tmp_path / "split")).metrics() if r["split"] == "val"] == \
        [r["loss"] for r in RunDir(str(tmp_path / "full")).metrics() if r["split"] == "val"]


@pytest.mark.slow
def test_sigterm_to_the_script_exits_143_and_resume_matches_an_uninterrupted_run(tiny: Config, tmp_path: Path) -> None:
    settings = dict(max_steps=400, checkpoint_every=1000, log_every=1, validate_every=1000)
    config = write_config(tmp_path, tiny, **settings)
    run_dir = tmp_path / "r"
    process = subprocess.Popen([sys.executable, str(REPO / "scripts/train.py"), str(config), "--run-dir", str(run_dir),
                                "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    metrics = run_dir / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 5):
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert stderr.splitlines()[-1] == "error: interrupted (SIGTERM)"
    reached = int(tf.train.latest_checkpoint(str(run_dir / "checkpoints")).rsplit("-", 1)[1])
    assert 4 <= reached < 400
    result = run_script("train.py", str(config), "--run-dir", str(run_dir), "--resume", "--max-steps", str(reached + 3),
                        "--no-progress")
    assert result.returncode == 0, result.stderr
    trainer(tiny, tmp_path / "full", **settings).train(max_steps=reached + 3)
    assert losses(run_dir) == losses(tmp_path / "full")


def test_best_checkpoint_missing_falls_back_to_latest_with_a_warning(tiny: Config, tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    trainer(tiny, tmp_path / "run", checkpoint_every=1).train(max_steps=2)
    shutil.rmtree(tmp_path / "run" / "best")
    with caplog.at_level("WARNING", logger="bruno.runs"):
        _, _, step = restore_model(str(tmp_path / "run"), "best")
    assert step == 2
    assert "no best checkpoint (not validated yet); using the latest, step 2" in caplog.text
    with pytest.raises(RunDirError, match=r"run: no checkpoint found"):
        shutil.rmtree(tmp_path / "run" / "checkpoints")
        restore_model(str(tmp_path / "run"), "latest")


def test_run_dir_rules(tiny: Config, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with pytest.raises(RunDirError, match=r"run: --resume, but there is no checkpoint to resume from"):
        RunDir(str(run_dir)).prepare(tiny, resume=True, overwrite=False)
    trainer(tiny, run_dir).train(max_steps=2)
    with pytest.raises(RunDirError, match=r"run: already holds a run \(pass --resume to continue it or --overwrite"):
        RunDir(str(run_dir)).prepare(tiny, resume=False, overwrite=False)
    other = override(tiny, "train", learning_rate=0.5)
    with pytest.raises(RunDirError, match=r"run: holds a different experiment, train\.learning_rate \(0\.001 there, 0\.5 here\)"):
        RunDir(str(run_dir)).prepare(other, resume=True, overwrite=False)
    RunDir(str(run_dir)).prepare(override(tiny, "train", max_steps=50), resume=True, overwrite=False)  # longer is fine
    RunDir(str(run_dir)).prepare(override(tiny, "train", max_steps=2), resume=True, overwrite=False)  # finishes the run
    with pytest.raises(RunDirError, match=r"run: --resume to max_steps=1, but the run is already at step 2"):
        RunDir(str(run_dir)).prepare(override(tiny, "train", max_steps=1), resume=True, overwrite=False)
    RunDir(str(run_dir)).prepare(other, resume=False, overwrite=True)
    assert not (run_dir / "checkpoints").exists() and "learning_rate: 0.5" in (run_dir / "config.yaml").read_text()


def test_run_files_without_a_checkpoint_are_kept_unless_overwrite(tiny: Config, tmp_path: Path) -> None:
    """A run killed before its first checkpoint still has its config and log: refused, and replaced only with overwrite
    (its run files only: the user's other files stay)."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("left by a start that was killed")
    (run_dir / "metrics.jsonl").write_text('{"step": 0}\n')
    (run_dir / "notes.txt").write_text("the user's")
    with pytest.raises(RunDirError, match=r"holds a run that stopped before its first checkpoint \(config\.yaml\)"):
        RunDir(str(run_dir)).check_for_training(tiny, resume=False, overwrite=False)
    RunDir(str(run_dir)).prepare(tiny, resume=False, overwrite=True)
    assert RunDir(str(run_dir)).config() == tiny and not (run_dir / "metrics.jsonl").exists()
    assert (run_dir / "notes.txt").read_text() == "the user's"


def test_unwritable_run_dir(tiny: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    if os.geteuid() == 0:  # root may write anywhere; simulate what a normal user meets
        monkeypatch.setattr("bruno.runs.run_dir.os.access", lambda path, mode: False)
    try:
        with pytest.raises(RunDirError, match=r"locked/r: (run directory is not writable|cannot create the run directory)"):
            RunDir(str(locked / "r")).prepare(tiny, resume=False, overwrite=False)
    finally:
        locked.chmod(0o755)


def test_table_must_exist_and_match(tiny: Config, tmp_path: Path) -> None:
    from bruno.data.preprocess import load_slice_table

    nifti = dataclasses.replace(tiny, data=dataclasses.replace(tiny.data, source="nifti", output=str(tmp_path / "none.h5")))
    with pytest.raises(DataFileError, match=r"none\.h5: no such file; preprocess the data first"):
        load_slice_table(nifti)
    mismatched = override(tiny, "data", num_poses=9)
    with pytest.raises(DataFileError, match=r"tiny\.h5: holds 8 poses of 16x16, but the config asks for 9 of 16x16"):
        load_slice_table(mismatched)


# ------------------------------------------------------------------------------------------ CLI
def write_config(tmp_path: Path, tiny: Config, **train: object) -> Path:
    from bruno.config import config_to_yaml

    path = tmp_path / "exp.yaml"
    path.write_text(config_to_yaml(override(tiny, "train", **train)))
    return path


def test_cli_bad_inputs(tiny: Config, tmp_path: Path) -> None:
    assert_one_line_error(run_script("train.py", str(tmp_path / "missing.yaml")), r"missing\.yaml: config file not found")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {num_context: 9, seq_len: 4}")
    assert_one_line_error(run_script("train.py", str(bad)), r"bad\.yaml: train\.num_context=9, expected an integer in \[0, seq_len\)")
    config = write_config(tmp_path, tiny)
    assert_one_line_error(run_script("train.py", str(config), "--run-dir", str(tmp_path / "r"), "--resume"),
                          r"--resume, but there is no checkpoint")
    assert_one_line_error(run_script("train.py", str(config), "--run-dir", str(tmp_path / "r"), "--gpus", "4"),
                          r"--gpus 4: only 0 GPU\(s\) visible")


def test_cli_nan_exits_non_zero(tiny: Config, tmp_path: Path) -> None:
    config = write_config(tmp_path, tiny, learning_rate=1e30, max_steps=30, checkpoint_every=1)
    result = run_script("train.py", str(config), "--run-dir", str(tmp_path / "r"), "--no-progress")
    assert_one_line_error(result, r"step \d+: training loss is (nan|inf)")


@pytest.mark.slow
def test_kill_mid_run_then_resume_loses_at_most_one_interval(tiny: Config, tmp_path: Path) -> None:
    config = write_config(tmp_path, tiny, max_steps=400, checkpoint_every=4, log_every=1, validate_every=1000)
    run_dir = tmp_path / "r"
    process = subprocess.Popen([sys.executable, str(REPO / "scripts/train.py"), str(config), "--run-dir", str(run_dir),
                                "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = run_dir / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 10):
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    complete = metrics.read_text().split("\n")[:-1]  # the kill may cut the last record short
    reached = max(json.loads(line)["step"] for line in complete)
    assert reached >= 8  # at least two checkpoint intervals were written
    result = run_script("train.py", str(config), "--run-dir", str(run_dir), "--resume", "--max-steps", str(reached + 2),
                        "--no-progress")
    assert result.returncode == 0, result.stderr
    resumed_at = int(result.stderr.split("at step ")[1].split()[0])
    assert reached - 4 <= resumed_at <= reached
    steps = [s for s, _ in losses(run_dir)]  # every line parses: a half-written one was cut on resume
    assert steps[-1] == reached + 2 and math.isfinite(losses(run_dir)[-1][1])
    assert steps == list(range(1, reached + 3))  # the steps redone after the checkpoint are logged once (issue 28)


def test_trim_metrics_keeps_the_records_up_to_the_restored_step(tmp_path: Path) -> None:
    records = [{"step": s, "split": "train", "loss": 1.0 / s} for s in (1, 2, 3, 4)] + [{"step": 2, "split": "val", "loss": None}]
    text = "".join(json.dumps(r) + "\n" for r in sorted(records, key=lambda r: r["step"]))
    (tmp_path / "metrics.jsonl").write_text(text + '{"step": 5, "spl')  # as a kill mid-write leaves it
    RunDir(str(tmp_path)).trim_metrics(3)
    kept = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["split"]) for r in kept] == [(1, "train"), (2, "train"), (2, "val"), (3, "train")]
    before = (tmp_path / "metrics.jsonl").stat().st_mtime_ns
    RunDir(str(tmp_path)).trim_metrics(3)  # nothing to cut: the file is left alone
    assert (tmp_path / "metrics.jsonl").stat().st_mtime_ns == before


def test_a_complete_checkpoint_counts_without_its_index_file(tiny: Config, tmp_path: Path) -> None:
    """A kill between writing ckpt-4 and the ``checkpoint`` index file: --resume finds ckpt-4 (issue 28)."""
    run_dir = tmp_path / "r"
    trainer(tiny, run_dir, checkpoint_every=2).train(max_steps=4)
    folder = run_dir / "checkpoints"
    (folder / "checkpoint").write_text('model_checkpoint_path: "ckpt-2"\nall_model_checkpoint_paths: "ckpt-2"\n')  # the index lags
    assert RunDir(str(run_dir)).latest_step() == 4
    (folder / "checkpoint").unlink()  # or is not there at all
    assert RunDir(str(run_dir)).latest_step() == 4
    (folder / "ckpt-4.data-00000-of-00001").unlink()  # an incomplete one does not count
    assert RunDir(str(run_dir)).latest_step() == 2


def test_metrics_write_null_for_nan(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from bruno.training import Trainer

    Trainer._log(SimpleNamespace(role=SimpleNamespace(is_chief=True), run=RunDir(str(tmp_path)), _writer=None),  # type: ignore[arg-type]
                 {"step": 1, "split": "train", "loss": math.nan, "scale": math.inf, "time": 0.0})
    line = (tmp_path / "metrics.jsonl").read_text()
    assert json.loads(line, parse_constant=lambda name: pytest.fail(f"{name} in metrics.jsonl")) == \
        {"step": 1, "split": "train", "loss": None, "scale": None, "time": 0.0}


MIRRORED = """
import os, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from bruno.config import load_config, override
from bruno.runs import RunDir, make_deterministic
from bruno.training import Trainer
folder = sys.argv[1]
config = override(load_config(sys.argv[2]), "data", output=os.path.join(folder, "tiny.h5"))
for name, strategy in [("single", None), ("mirrored", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))]:
    run = os.path.join(folder, name)
    RunDir(run).prepare(config, False, False)
    make_deterministic(0)
    print(name, repr(Trainer(config, run, strategy=strategy, progress=False).train(max_steps=3).train_loss))
"""


@pytest.mark.slow
def test_mirrored_strategy_matches_a_single_device(tmp_path: Path) -> None:
    """The multi-GPU path, on two logical CPU devices: same losses as one device (batch split, gradients averaged)."""
    result = subprocess.run([sys.executable, "-c", MIRRORED, str(tmp_path), str(REPO / "config_rnn/tiny.yaml")],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    values = dict(line.split() for line in result.stdout.splitlines() if line.startswith(("single", "mirrored")))
    assert float(values["mirrored"]) == pytest.approx(float(values["single"]), rel=1e-4)


@pytest.mark.slow
def test_fine_tuning_a_pose_kernel_run_with_latent_factors(tiny: Config, tmp_path: Path) -> None:
    """train.init_from copies the flow and the shared process parameters; the factors start from a shrunk PCA."""
    source_config = override(tiny, "model.process", kind="pose_gaussian")
    source = trainer(source_config, tmp_path / "source", num_context_min=1, process_grad_schedule={0: 1.0})
    source.train(max_steps=2)
    config = override(source_config, "model.process", kind="latent_factor", latent_factors=3)
    settings = dict(init_from=str(tmp_path / "source"), num_context_min=1, process_grad_schedule={0: 1.0}, log_every=1)
    tuned = trainer(config, tmp_path / "tuned", **settings)
    tuned._initialize()
    ours, theirs = tuned.model, restore_model(str(tmp_path / "source"))[0]
    for a, b in zip(ours.flow.variables, theirs.flow.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(ours.process.prior_atlas.numpy(), theirs.process.prior_atlas.numpy())
    np.testing.assert_array_equal(ours.process.variance.numpy(), theirs.process.variance.numpy())
    loadings = ours.process.prior_loadings.numpy()
    assert loadings.shape == (8, 256, 3) and np.abs(loadings).max() > 0
    train_volumes = len(tuned.table.volumes_in("train"))
    assert np.all(loadings[..., train_volumes - 1:] == 0)  # 4 train volumes give 3 directions at most
    result = tuned.train(max_steps=2)
    assert math.isfinite(result.best_val_loss)
    other = override(config, "data", output=str(tmp_path / "other.h5"))
    with pytest.raises(ConfigError, match="data section differs"):
        trainer(other, tmp_path / "bad", **settings)._initialize()
    with pytest.raises(ConfigError, match="model.flow.num_filters=8 there, expected 16"):
        trainer(override(config, "model.flow", num_filters=16), tmp_path / "bad2", **settings)._initialize()


def test_a_population_run_fills_its_bank_trains_on_it_and_restores_it(tiny: Config, tmp_path: Path) -> None:
    """SPEC §9.4: step 0 encodes the 4 train volumes into the bank; each step writes its sequences' latents at
    (their train subject, pose) and leaves that subject out; the bank is saved and restored with the checkpoint."""
    config = override(tiny, "model.process", kind="population")
    run = trainer(config, tmp_path / "run", num_context_min=1, process_grad_schedule={0: 1.0}, log_every=1)
    run._initialize()
    bank = run.model.process.population_bank.numpy().copy()
    train = run.table.volumes_in("train")
    assert bank.shape == (len(train), 8, 256) and np.all(np.isfinite(bank))
    state = run.sampler.state
    batch = run.sampler.next_batch()  # the batch step 1 will draw
    run.sampler.state = state
    result = run.train(max_steps=1)
    assert math.isfinite(result.train_loss) and math.isfinite(result.best_val_loss)
    assert not (tmp_path / "run" / "population.npz").exists()  # training alone does not make the test-time state
    assert fit_population_state(str(tmp_path / "run"), run.table, False) is not None
    written = run.model.process.population_bank.numpy()
    changed = np.argwhere(np.any(written != bank, axis=-1))
    rows = {(int(np.searchsorted(train, v)), int(np.argmax(p))) for v, seq in zip(batch["volume"], batch["poses"]) for p in seq}
    assert {tuple(map(int, c)) for c in changed} == rows
    restored, _, step = restore_model(str(tmp_path / "run"), "latest")
    assert step == 1 and restored.uses_subjects
    np.testing.assert_array_equal(restored.process.population_bank.numpy(), written)
    check_test_time_state(tmp_path / "run", run.table)
    few = override(config, "data", output=str(tmp_path / "few.h5"))
    few = override(few, "data.split", train=0.25, val=0.25, test=0.5)
    with pytest.raises(DataFileError, match=r"few\.h5: model\.process needs >= 3 train volumes, found 2"):
        trainer(few, tmp_path / "few", num_context_min=1)._initialize()


def check_test_time_state(run_dir: Path, table: SliceTable) -> None:
    """The end of a population run: the best flow encodes the train split again into the bank, c is the grid value
    with the best val SSIM, both restored with the best checkpoint (not the latest) and refused when stale or corrupt."""
    search = json.loads((run_dir / "population.json").read_text())
    trained, _, step = restore_model(str(run_dir), "best", population_state=False)
    assert search["fitted_to"]["checkpoint_step"] == step and search["format"] == SEARCH_FORMAT
    assert [g["shrinkage"] for g in search["grid"]] == sorted({search["learned_shrinkage"], *SHRINKAGES})
    assert search["chosen"] == max(search["grid"], key=lambda g: g["val_ssim"])
    model, _, _ = restore_model(str(run_dir), "best")
    np.testing.assert_allclose(model.process.population_bank.numpy(), SliceEncoder(trained).volumes(read_split(table, "train"), False), rtol=1e-6)
    assert model.process.shrinkage.numpy() == pytest.approx(search["chosen"]["shrinkage"], rel=1e-6)
    assert fit_population_state(str(run_dir), table, False) is None  # made once per best checkpoint
    state = run_dir / "population.npz"
    bank, shrinkage, _, weights = read_population_state(RunDir(str(run_dir)))
    assert weights == trained.weights_sha1()
    write_population_state(RunDir(str(run_dir)), bank, shrinkage, step + 1, weights)
    with pytest.raises(RunDirError, match=rf"population\.npz: made for the best checkpoint of step {step + 1}, but the best checkpoint is step {step}"):
        restore_model(str(run_dir), "best")
    write_population_state(RunDir(str(run_dir)), bank, shrinkage, step, "0" * 40)  # another run's file of the same step
    with pytest.raises(RunDirError, match=r"population\.npz: made for other weights than this run's best checkpoint"):
        restore_model(str(run_dir), "best")
    state.write_bytes(state.read_bytes()[:-100])
    with pytest.raises(RunDirError, match=r"population\.npz: not a readable population state"):
        restore_model(str(run_dir), "best")
    assert fit_population_state(str(run_dir), table, False) is not None  # a corrupt state is made again
    assert read_population_state(RunDir(str(run_dir))).checkpoint_step == step


def test_a_run_checkpointed_before_the_training_package_split_still_restores() -> None:
    """tests/fixtures/tiny_run_v1: tiny.yaml trained 20 steps (seed 0) by the code before issue 19, saved model-only;
    the log-probabilities of a fixed batch were recorded then."""
    model, config, step = restore_model(str(REPO / "tests/fixtures/tiny_run_v1"))
    assert step == 20 and config.model.flow.num_dense_couplings == 2
    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(0, 255, (2, 4, 16, 16, 1)), tf.float32)
    poses = tf.one_hot([[0, 3, 5, 7], [1, 2, 4, 6]], 8)
    np.testing.assert_allclose(model.log_prob(images, poses, 3).log_prob.numpy(), [[-1890.0543212890625], [-1716.9437255859375]],
                               rtol=1e-6)
