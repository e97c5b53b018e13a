"""One writer per run directory (issue 37, item 1): a second writer is refused naming the first's PID, a lock whose
process is gone is taken over with a warning, and a failed start leaves no folder behind."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bruno.config import Config, config_to_yaml, override
from bruno.errors import RunDirError
from bruno.runs.lock import LOCK_NAME, holder, run_lock
from tests.conftest import REPO, assert_one_line_error, losses, run_script, train_tiny_run

HOLD = "import sys, time; from bruno.runs.lock import run_lock\nwith run_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)"


def _holding(run_dir: Path) -> subprocess.Popen[str]:
    """Another process holding ``run_dir``'s lock (started and holding when this returns)."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    return process


def test_lock_is_refused_while_held_and_taken_over_once_its_process_is_gone(tmp_path: Path,
                                                                            caplog: pytest.LogCaptureFixture) -> None:
    run_dir = tmp_path / "run"
    process = _holding(run_dir)
    try:
        assert holder(str(run_dir)) is not None and f"PID {process.pid} " in holder(str(run_dir))  # type: ignore[operator]
        with pytest.raises(RunDirError, match=rf"run: in use by another training process \(PID {process.pid} on "):
            with run_lock(str(run_dir)):
                pass
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert (run_dir / LOCK_NAME).exists() and holder(str(run_dir)) is None  # stale: the file stays, nobody holds it
    with run_lock(str(run_dir)):
        assert json.loads((run_dir / LOCK_NAME).read_text())["pid"] != process.pid
    assert f"took over a stale lock (PID {process.pid} on" in caplog.text
    assert not (run_dir / LOCK_NAME).exists()


def test_a_failed_start_leaves_no_folder_behind(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="boom"):
        with run_lock(str(tmp_path / "a" / "b" / "run")):
            assert (tmp_path / "a" / "b" / "run" / LOCK_NAME).exists()
            raise ValueError("boom")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RunDirError, match=r"x/run: .*x is a file, expected a folder"):
        (tmp_path / "x").write_text("")
        with run_lock(str(tmp_path / "x" / "run")):
            pass


@pytest.mark.slow
def test_a_second_train_is_refused_while_the_first_lives_then_resumes_once_it_is_killed(tiny: Config, tmp_path: Path) -> None:
    """Two ``train.py`` on one run directory (the issue's reproducer): the second, with ``--resume`` or without, is
    refused naming the first's PID and changes nothing; once the first is killed, ``--resume`` takes its stale lock
    over and logs every step once."""
    config = tmp_path / "exp.yaml"
    config.write_text(config_to_yaml(override(tiny, "train", max_steps=400, checkpoint_every=4, log_every=1, validate_every=1000)))
    run_dir = tmp_path / "r"
    first = subprocess.Popen([sys.executable, str(REPO / "scripts/train.py"), str(config), "--run-dir", str(run_dir),
                              "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = run_dir / "metrics.jsonl"
    try:
        deadline = time.time() + 120
        while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 6):
            time.sleep(0.2)
        for extra in (("--resume",), ()):
            result = run_script("train.py", str(config), "--run-dir", str(run_dir), *extra, "--no-progress")
            assert_one_line_error(result, rf"r: in use by another training process \(PID {first.pid} on .*\); wait for it")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    reached = max(json.loads(line)["step"] for line in metrics.read_text().split("\n")[:-1])
    result = run_script("train.py", str(config), "--run-dir", str(run_dir), "--resume", "--max-steps", str(reached + 2),
                        "--no-progress")
    assert result.returncode == 0, result.stderr
    assert f"took over a stale lock (PID {first.pid} on" in result.stderr
    assert [s for s, _ in losses(run_dir)] == list(range(1, reached + 3))
    assert not (run_dir / LOCK_NAME).exists()


def test_a_best_checkpoint_replaced_while_being_read_restores_its_successor(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """``sample_prior`` while training replaces ``best/`` (item 12): the checkpoint found is deleted before it is read;
    the one that replaced it is restored, not "unreadable or truncated"."""
    from bruno.runs import restore as restore_module

    run = train_tiny_run(tmp_path, max_steps=3)
    best = run / "best"
    (old,) = [p.name[: -len(".index")] for p in best.glob("ckpt-*.index")]
    real = restore_module.restore_checkpoint
    calls = []

    def replaced_first(checkpoint, path, model):  # type: ignore[no-untyped-def]
        calls.append(Path(path).name)
        if len(calls) == 1:  # what best_manager.save does between our listing and our read: write the new, drop the old
            for part in best.glob(f"{old}.*"):
                part.rename(best / part.name.replace(old, "ckpt-7"))
        return real(checkpoint, path, model)

    monkeypatch.setattr(restore_module, "restore_checkpoint", replaced_first)
    model, _, step = restore_module.restore_model(str(run))
    assert calls == [old, "ckpt-7"] and step == 3
    for part in best.glob("ckpt-7.*"):  # a checkpoint that is really broken is still refused at once
        part.write_bytes(b"")
    calls.clear()
    with pytest.raises(RunDirError, match=r"ckpt-7: checkpoint is unreadable or truncated"):
        restore_module.restore_model(str(run))
    assert calls == ["ckpt-7"]
