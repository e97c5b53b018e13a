"""evaluate's acquired-slices protocol on a small NIfTI table (classical methods: no training needed)."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from bruno.baselines import population_mean
from bruno.data.preprocess import build_slice_table
from bruno.data.subjects import Subject, pose_spacings, read_split
from bruno.errors import ConfigError
from bruno.experiments.acquired_protocol import acquired_inputs
from bruno.experiments.evaluation import evaluate
from bruno.reconstruction.classical import Atlas, LinearInterpolation
from bruno.runs import InferenceRecord
from tests.conftest import assert_one_line_error, head_like, nifti_config, run_script, tiny_config, write_nifti


@pytest.fixture
def table(tmp_path: Path):  # type: ignore[no-untyped-def]
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(6):
        affine = np.diag([2.0, 2.0, 1.5, 1.0])
        affine[:3, 3] = [-20.0, -24.0, -30.0 + i]  # the heads sit at different heights
        write_nifti(folder / f"sub-{i}.nii.gz", head_like((20, 24, 40), seed=i), affine)
    config = nifti_config(tmp_path, num_poses=8, slab_fraction=0.75, slab_reference="foreground")
    return build_slice_table(config, progress=False), config


def test_known_poses_are_exact_and_estimates_are_close(table) -> None:  # type: ignore[no-untyped-def]
    table, config = table
    atlas = population_mean(read_split(table, "train"))
    test = [int(i) for i in table.volumes_in("test")] + [int(i) for i in table.volumes_in("val")]
    subjects = [Subject(str(i), table.read(table.rows_of(i)), info=table.info(i)) for i in test]
    methods = [LinearInterpolation(), Atlas(atlas)]
    for poses_from in ("known", "estimated"):
        acquire = acquired_inputs(table, config.data, poses_from, None, InferenceRecord(pose_spacings(table), atlas))
        results, _ = evaluate(methods, subjects, [2, 4], lambda k, n: list(np.linspace(0, n - 1, k).round().astype(int)),
                              1, progress=False, acquire=acquire)
        errors = [r["pose_error"] for r in results.per_subject]
        assert all(np.mean(r["slice_pose_errors"]) == r["pose_error"] for r in results.per_subject)
        if poses_from == "known":
            assert errors == [0.0] * len(errors)
        else:
            assert np.mean(errors) <= 1.5
        assert 0.3 < results.table["linear"]["4"]["ssim"] <= 1.0
    phantom = tiny_config(Path(table.path).parent)
    from bruno.data.preprocess import load_slice_table

    tiny = load_slice_table(phantom, progress=False)
    with pytest.raises(ConfigError, match="built-in phantom data"):
        acquired_inputs(tiny, phantom.data, "known", None)(tiny.info(0), [1, 3])


def test_evaluate_cli_acquired_protocol(table, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    table, config = table
    config_path = tmp_path / "config.yaml"
    from bruno.config import config_to_yaml

    config_path.write_text(config_to_yaml(config))
    out = tmp_path / "eval"
    result = run_script("evaluate.py", "--config", str(config_path), "--protocol", "acquired", "--contexts-list", "2,3",
                        "--out", str(out), "--split", "val")
    assert result.returncode == 0, result.stderr
    report = (out / "results.md").read_text()
    assert "acquired slices only (poses estimated)" in report and "## Pose placement of the acquired slices" in report
    assert "| per slice: median / 90th percentile / max (poses) |" in report
    assert json.loads((out / "results.json").read_text())["protocol"] == "acquired"
    # new files (issue 28): each truth made as in training, from its whole file; known poses are exact
    files = run_script("evaluate.py", "--config", str(config_path), "--protocol", "acquired", "--input", str(tmp_path / "in"),
                       "--poses-from", "known", "--contexts-list", "2", "--max-subjects", "2", "--out", str(tmp_path / "e2"))
    assert files.returncode == 0, files.stderr
    scored = json.loads((tmp_path / "e2" / "results.json").read_text())
    assert scored["protocol"] == "acquired" and len(scored["per_subject"]) == 2
    assert [r["pose_error"] for r in scored["per_subject"]] == [0.0, 0.0]


def test_sources_are_absolute_and_a_moved_scan_is_named(table, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    table, config = table
    sources = [table.info(i).source for i in range(table.num_volumes)]
    assert all(os.path.isabs(s) and os.path.isfile(s) for s in sources)
    config_path = tmp_path / "config.yaml"
    from bruno.config import config_to_yaml

    config_path.write_text(config_to_yaml(config))
    (tmp_path / "in").rename(tmp_path / "moved")
    missing = table.info(int(table.volumes_in("val")[0])).source
    assert_one_line_error(run_script("evaluate.py", "--config", str(config_path), "--protocol", "acquired", "--contexts-list", "2",
                                     "--out", str(tmp_path / "e3"), "--split", "val", "--no-progress"),
                          re.escape(missing) + r": no such file \(the scan of subject .* in .*out\.h5")
    assert not (tmp_path / "e3").exists()
