"""Multi-worker training on loopback: 2 local CPU workers against 1, exact resume, a killed worker, bad set-ups."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bruno.config import config_to_yaml, load_config, override
from bruno.data.sampler import SequenceSampler
from bruno.data.table import SliceTable
from bruno.training.distribute import local_cluster
from tests.conftest import REPO, assert_one_line_error, run_script, tiny_config

pytestmark = pytest.mark.slow  # several worker processes, each training


def _losses(run_dir: Path) -> list[tuple[int, float]]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in records if r["split"] == "train"]


@pytest.fixture(scope="module")
def batch8(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny.yaml with a global batch of 8, 10 steps, a train record every step."""
    folder = tmp_path_factory.mktemp("multiworker")
    config = tiny_config(folder)
    config = override(config, "train", batch_size=8, max_steps=10, log_every=1, checkpoint_every=5)
    path = folder / "tiny8.yaml"
    path.write_text(config_to_yaml(config))
    return path


def test_each_worker_reads_its_shard_of_the_one_worker_stream(batch8: Path) -> None:
    config = load_config(batch8)
    assert run_script("preprocess.py", str(batch8), "--no-progress").returncode == 0
    table = SliceTable(config.data.output)
    whole = SequenceSampler(table, "train", 8, 4, seed=3)
    shards = [SequenceSampler(table, "train", 8, 4, seed=3, shard=(i, 2)) for i in range(2)]
    for _ in range(3):
        batch = whole.next_batch()
        parts = [s.next_batch() for s in shards]
        for key in ("images", "poses", "volume"):
            np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), batch[key])
    assert shards[0].state == shards[1].state == whole.state  # one stream position for every worker
    np.testing.assert_array_equal(shards[1].next_batch(whole=True)["images"], whole.next_batch()["images"])
    with pytest.raises(ValueError, match=r"shard=\(0, 3\), expected .* count dividing batch_size=8"):
        SequenceSampler(table, "train", 8, 4, seed=3, shard=(0, 3))


LAUNCH = ("launch_workers.py", "--workers", "2", "--")


@pytest.fixture(scope="module")
def two_workers(batch8: Path) -> list[tuple[int, float]]:
    """The train losses of an uninterrupted 2-worker run of ``batch8`` (10 steps)."""
    run_dir = batch8.parent / "two"
    result = run_script(*LAUNCH, str(batch8), "--no-progress", "--run-dir", str(run_dir))
    assert result.returncode == 0, result.stderr
    assert "[worker 1] " in result.stderr and not (run_dir / ".workers").exists()  # worker 1 wrote only scratch, then removed it
    return _losses(run_dir)


def test_two_workers_train_like_one_and_resume_exactly(batch8: Path, two_workers: list[tuple[int, float]],
                                                       tmp_path: Path) -> None:
    one, resumed = tmp_path / "one", tmp_path / "resumed"
    assert run_script("train.py", str(batch8), "--run-dir", str(one), "--no-progress").returncode == 0
    single = _losses(one)
    assert [s for s, _ in two_workers] == list(range(1, 11))
    # Same global batch, gradients all-reduced over the two halves: equal up to float32 summation order.
    np.testing.assert_allclose([v for _, v in two_workers], [v for _, v in single], rtol=1e-6)
    launch = (*LAUNCH, str(batch8), "--no-progress", "--run-dir", str(resumed))
    assert run_script(*launch, "--max-steps", "5").returncode == 0
    again = run_script(*launch, "--resume")
    assert again.returncode == 0, again.stderr
    assert "resumed" in again.stderr and _losses(resumed) == two_workers  # the data stream of each shard continues exactly


def test_a_killed_worker_ends_the_others_with_an_error_and_resume_recovers(batch8: Path, two_workers: list[tuple[int, float]],
                                                                          tmp_path: Path) -> None:
    config = override(load_config(batch8), "train", max_steps=100_000)
    path = tmp_path / "long.yaml"
    path.write_text(config_to_yaml(config))
    run_dir = tmp_path / "run"
    workers = [subprocess.Popen([sys.executable, str(REPO / "scripts/train.py"), str(path), "--run-dir", str(run_dir),
                                 "--strategy", "multiworker", "--no-progress"], env={**os.environ, "TF_CONFIG": tf_config},
                                stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
               for tf_config in local_cluster(2)]
    try:
        deadline = time.time() + 240
        while not (run_dir / "metrics.jsonl").exists() or len(_losses(run_dir)) < 6:  # past the checkpoint of step 5
            assert time.time() < deadline and workers[0].poll() is None, "the workers never trained"
            time.sleep(0.2)
        workers[1].kill()
        killed = time.time()
        stderr = workers[0].communicate(timeout=120)[1]  # the coordination service notices within ~10 s
    finally:
        for worker in workers:
            worker.kill()
    assert workers[0].returncode == 2 and time.time() - killed < 60
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    assert not re.search(r"^[IWEF]\d{4} ", stderr, re.MULTILINE), stderr  # the coordination service's C++ lines are dropped
    assert re.match(r"error: worker 0 of 2: another worker stopped answering at step \d+ \(.+\); restart every worker "
                    r"with --resume \(from .*ckpt-\d+\)", errors[0]), errors[0]
    again = run_script(*LAUNCH, str(path), "--no-progress", "--run-dir", str(run_dir), "--resume", "--max-steps", "30")
    assert again.returncode == 0, again.stderr
    latest = dict(_losses(run_dir))  # the steps redone after the chief's checkpoint are logged again, with the same losses
    assert [latest[step] for step in range(1, 11)] == [loss for _, loss in two_workers] and max(latest) == 30


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGKILL])
def test_workers_do_not_outlive_their_launcher(batch8: Path, tmp_path: Path, signum: int) -> None:
    """A closed terminal (SIGHUP) or kill -9 of the launcher: both workers stop within a minute (issue 28)."""
    config = override(load_config(batch8), "train", max_steps=100_000)
    path = tmp_path / "long.yaml"
    path.write_text(config_to_yaml(config))
    run_dir = tmp_path / "run"
    launcher = subprocess.Popen([sys.executable, str(REPO / "scripts" / LAUNCH[0]), *LAUNCH[1:], str(path), "--run-dir",
                                 str(run_dir), "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        deadline = time.time() + 240
        while not (run_dir / "metrics.jsonl").exists() or len(_losses(run_dir)) < 3:
            assert time.time() < deadline and launcher.poll() is None, "the workers never trained"
            time.sleep(0.2)
        workers = _children(launcher.pid)
        assert len(workers) == 2
        launcher.send_signal(signum)
        launcher.wait(timeout=120)
        deadline = time.time() + 60
        while any(_alive(w) for w in workers) and time.time() < deadline:
            time.sleep(0.2)
        assert not any(_alive(w) for w in workers)
    finally:
        launcher.kill()
        for worker in workers:
            if _alive(worker):
                os.kill(worker, signal.SIGKILL)


def test_bad_multiworker_set_ups_are_refused(batch8: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    train = ("train.py", str(batch8), "--run-dir", str(tmp_path / "r"), "--strategy", "multiworker")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert_one_line_error(run_script(*train), r"multiworker: TF_CONFIG is not set")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    assert_one_line_error(run_script(*train), r"TF_CONFIG: expected \{\"cluster\"")
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}}))
    assert_one_line_error(run_script(*train), r"TF_CONFIG: task .* is not one of the 1 workers")
    monkeypatch.delenv("TF_CONFIG")
    assert_one_line_error(run_script("launch_workers.py", "--", str(batch8), "--gpus", "2"),
                          r"--strategy / --gpus: the launcher sets --strategy multiworker itself")
    assert_one_line_error(run_script("launch_workers.py", "--workers", "0", "--", str(batch8)), r"--workers 0: expected an integer >= 1")
    assert_one_line_error(run_script("train.py", str(batch8), "--gpus", "2", "--strategy", "default"),
                          r"--gpus 2: expected N >= 1, and no --strategy other than mirrored")
    assert not (tmp_path / "r").exists()
