from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from bruno.config import Config, SplitConfig, config_to_yaml, parse_data_section
from bruno.data.preprocess import build_slice_table
from bruno.data.table import FORMAT_VERSION, SliceTable, assign_splits
from bruno.errors import ConfigError, DataFileError, OutputPathError, VolumeError
from bruno.files import atomic_output
from tests.conftest import head_like, is_root, nifti_config, phantom_config, write_nifti


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".h5", ".part.h5")) or ".part" in p.name)


def test_layout(tmp_path: Path) -> None:
    config = phantom_config(tmp_path, subjects=6)
    table = build_slice_table(config, progress=False)
    with h5py.File(config.data.output, "r") as f:
        assert f["images"].dtype == np.uint8 and f["images"].shape == (48, 16, 16)
        assert f["volume"].dtype == np.int32 and f["pose"].dtype == np.int32
        np.testing.assert_array_equal(f["volume"][()], np.repeat(np.arange(6), 8))
        np.testing.assert_array_equal(f["pose"][()], np.tile(np.arange(8), 6))
        table_group = f["volumes"]
        assert table_group["affine"].shape == (6, 4, 4) and table_group["affine"].dtype == np.float64
        assert table_group["spacing"].shape == (6, 3) and table_group["original_shape"].shape == (6, 3)
        assert table_group["slab"].shape == (6, 2) and table_group["intensity"].shape == (6, 2)
        assert set(table_group["split"].asstr()[()]) <= {"train", "val", "test"}
        assert f.attrs["format_version"] == FORMAT_VERSION
        assert (f.attrs["num_poses"], f.attrs["image_size"], f.attrs["slab_fraction"]) == (8, 16, 0.75)
        assert parse_data_section(yaml.safe_load(f.attrs["data"]), "t") == config.data and "config" not in f.attrs
    assert table.num_volumes == 6 and table.data == config.data
    info = table.info(2)
    assert info.subject == "phantom_0002" and info.source == "phantom://seed3/2"
    np.testing.assert_allclose(info.spacing, [8.0, 8.0, 8.0])
    assert table.read(np.array([17, 3, 17])).shape == (3, 16, 16)
    np.testing.assert_array_equal(table.read(np.array([17, 3]))[0], table.read(np.array([17]))[0])


def test_assign_splits_counts_seed_and_disjointness() -> None:
    subjects = [f"s{i:03d}" for i in range(100)]
    split = SplitConfig(train=0.7, val=0.15, test=0.15, seed=4)
    labels = assign_splits(subjects, split)
    assert [labels.count(s) for s in ("train", "val", "test")] == [70, 15, 15]
    assert labels == assign_splits(subjects, split)
    assert labels != assign_splits(subjects, SplitConfig(train=0.7, val=0.15, test=0.15, seed=5))
    repeated = assign_splits(["a", "b", "a", "c", "b", "d"], SplitConfig(train=0.5, val=0.25, test=0.25))
    assert repeated[0] == repeated[2] and repeated[1] == repeated[4]
    assert assign_splits(["a", "b"], SplitConfig(train=0.4, val=0.3, test=0.3)).count("train") >= 1


def test_volumes_of_one_subject_share_a_split(tmp_path: Path, input_dir: Path) -> None:
    config = nifti_config(tmp_path, subject_pattern=r"^(sub-\w)")
    table = build_slice_table(config, progress=False)
    subjects = [table.info(i).subject for i in range(table.num_volumes)]
    assert subjects == ["sub-a", "sub-b", "sub-b", "sub-c"]
    by_subject: dict[str, set[str]] = {}
    for i, s in enumerate(subjects):
        by_subject.setdefault(s, set()).add(str(table.splits[i]))
    assert all(len(v) == 1 for v in by_subject.values())
    splits = [set(np.flatnonzero(table.splits == s)) for s in ("train", "val", "test")]
    assert sum(len(s) for s in splits) == 4 and not (splits[0] & splits[1] or splits[0] & splits[2] or splits[1] & splits[2])


def test_one_bad_file_stops_with_its_name_and_leaves_nothing(tmp_path: Path, input_dir: Path) -> None:
    (input_dir / "sub-b_t2.nii.gz").write_text("garbage")
    with pytest.raises(VolumeError, match=r"sub-b_t2\.nii\.gz: not a readable NIfTI file"):
        build_slice_table(nifti_config(tmp_path), progress=False)
    assert leftovers(tmp_path) == []


def test_skip_bad_records_the_file(tmp_path: Path, input_dir: Path) -> None:
    write_nifti(input_dir / "sub-d_t1.nii.gz", np.zeros((6, 6, 6), np.float32))
    table = build_slice_table(nifti_config(tmp_path), skip_bad=True, progress=False)
    assert table.num_volumes == 4
    assert len(table.skipped) == 1
    source, reason = table.skipped[0]
    assert source.endswith("sub-d_t1.nii.gz") and "constant volume" in reason


def test_all_bad_with_skip_bad_is_an_error(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    write_nifti(folder / "flat.nii", np.ones((6, 6, 6), np.float32))
    with pytest.raises(VolumeError, match=r"all 1 input files were unusable"):
        build_slice_table(nifti_config(tmp_path), skip_bad=True, progress=False)
    assert leftovers(tmp_path) == []


def test_existing_output_is_refused_unless_overwrite(tmp_path: Path) -> None:
    config = phantom_config(tmp_path, subjects=2)
    Path(config.data.output).write_text("precious")
    with pytest.raises(OutputPathError, match=r"phantom\.h5: output file exists \(pass --overwrite to replace it\)"):
        build_slice_table(config, progress=False)
    assert Path(config.data.output).read_text() == "precious"
    assert build_slice_table(config, overwrite=True, progress=False).num_volumes == 2


def test_missing_output_folder(tmp_path: Path) -> None:
    config = phantom_config(tmp_path, output=str(tmp_path / "nope" / "x.h5"))
    with pytest.raises(OutputPathError, match=r"x\.h5: output folder .*nope does not exist"):
        build_slice_table(config, progress=False)


def test_read_only_output_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    if is_root():  # root may write anywhere; simulate the permission check a normal user hits
        monkeypatch.setattr("bruno.files.os.access", lambda path, mode: False)
    try:
        with pytest.raises(OutputPathError, match=r"x\.h5: output folder .*ro is not writable"):
            build_slice_table(phantom_config(tmp_path, output=str(folder / "x.h5")), progress=False)
    finally:
        folder.chmod(0o755)
    assert list(folder.iterdir()) == []


def test_empty_folder_and_unset_input(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    with pytest.raises(VolumeError, match=r"in: folder contains no \.nii or \.nii\.gz files"):
        build_slice_table(nifti_config(tmp_path), progress=False)
    with pytest.raises(ConfigError, match=r"data\.input is not set"):
        build_slice_table(nifti_config(tmp_path, input=None), progress=False)
    assert leftovers(tmp_path) == []


def test_failure_while_finishing_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> list[str]:
        raise RuntimeError("disk full")

    monkeypatch.setattr("bruno.data.table.assign_splits", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        build_slice_table(phantom_config(tmp_path, subjects=2), progress=False)
    assert leftovers(tmp_path) == []


def test_atomic_output_removes_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "out.png"
    with pytest.raises(RuntimeError):
        with atomic_output(str(target)) as tmp:
            Path(tmp).write_text("half")
            raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []
    with atomic_output(str(target)) as tmp:
        assert tmp.endswith(".png")
        Path(tmp).write_text("whole")
    assert target.read_text() == "whole" and len(list(tmp_path.iterdir())) == 1


def test_slice_table_rejects_bad_files(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match=r"missing\.h5: no such file"):
        SliceTable(str(tmp_path / "missing.h5"))
    junk = tmp_path / "junk.h5"
    junk.write_bytes(os.urandom(256))
    with pytest.raises(DataFileError, match=r"junk\.h5: not a readable slice table"):
        SliceTable(str(junk))
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = 1
    with pytest.raises(DataFileError, match=r"other\.h5: format_version=-1, expected one of \(1, 2\)"):
        SliceTable(str(other))


def _format_1(config: Config) -> Path:
    """A table as the code before format 2 wrote it: the same datasets, with the whole resolved config in
    attrs['config'] and format_version 1 (no attrs['data'])."""
    build_slice_table(config, progress=False)
    with h5py.File(config.data.output, "r+") as f:
        del f.attrs["data"]
        f.attrs["format_version"] = 1
        f.attrs["config"] = config_to_yaml(config)
    return Path(config.data.output)


def test_a_version_1_table_still_opens_and_keys_it_does_not_know_are_ignored(tmp_path: Path) -> None:
    config = phantom_config(tmp_path)
    old = _format_1(config)
    table = SliceTable(str(old))
    assert (table.num_volumes, table.num_poses, table.image_size) == (6, 8, 16) and table.data == config.data
    assert table.read(table.rows_of(0)).shape == (8, 16, 16)
    with h5py.File(old, "r+") as f:  # a model key renamed since, and a data key from a newer version
        stored = yaml.safe_load(f.attrs["config"])
        stored["model"]["a_key_renamed_since"] = 1
        stored["data"]["a_key_from_the_future"] = True
        f.attrs["config"] = yaml.safe_dump(stored)
    assert SliceTable(str(old)).data == config.data
    with h5py.File(old, "r+") as f:  # values of keys it knows are still checked
        stored["data"]["num_poses"] = "eight"
        f.attrs["config"] = yaml.safe_dump(stored)
    with pytest.raises(DataFileError, match=r"phantom\.h5: not a readable slice table .*data\.num_poses='eight'"):
        SliceTable(str(old))


def test_volumes_written_in_world_coordinates(tmp_path: Path) -> None:
    """The slab affine puts the slab where the source volume was."""
    folder = tmp_path / "in"
    folder.mkdir()
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    affine[:3, 3] = [-20.0, -24.0, -45.0]
    write_nifti(folder / "v.nii.gz", head_like((20, 24, 30)), affine)
    table = build_slice_table(nifti_config(tmp_path, slab_fraction=1.0), progress=False)
    slab_affine = table.info(0).affine
    corner_first = slab_affine @ np.array([-0.5, -0.5, -0.5, 1.0])
    corner_last = slab_affine @ np.array([15.5, 15.5, 5.5, 1.0])
    # The slab spans the source's z extent [-45 - 1.5, -45 + 29 * 3 + 1.5] and a square in x/y
    # centred on the source's x/y extent.
    np.testing.assert_allclose([corner_first[2], corner_last[2]], [-46.5, 43.5])
    np.testing.assert_allclose((corner_first[:2] + corner_last[:2]) / 2, [-20 + 19, -24 + 23], atol=1.0)
