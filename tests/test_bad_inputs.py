"""The bad-input matrix: each case runs a script as a new user would and must end with exit code 2,
exactly one line on stderr (``error: ...`` naming the culprit; TensorFlow's start-up logging is
silenced), no traceback, and no file or folder created or changed anywhere under the test's folder
(every file's bytes compared before and after)."""
from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
import yaml

from bruno.config import config_to_yaml, override
from tests.conftest import head_like, run_script, run_script_process, tiny_config, train_tiny_run, write_nifti


def _corrupt_every_chunk(path: Path) -> None:
    """Overwrite the compressed bytes of every image chunk (the file still opens; reading images fails)."""
    with h5py.File(path, "r") as f:
        images = f["images"]
        extents = [images.id.get_chunk_info(i) for i in range(images.id.get_num_chunks())]
    with open(path, "r+b") as f:
        for chunk in extents:
            f.seek(chunk.byte_offset)
            f.write(b"\xff" * chunk.size)


def _edit_config(run: Path, **flow: object) -> None:
    stored = yaml.safe_load((run / "config.yaml").read_text())
    stored["model"]["flow"].update(flow)
    (run / "config.yaml").write_text(yaml.safe_dump(stored))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny trained run and its table, a scan, and the broken variants the cases need."""
    folder = tmp_path_factory.mktemp("bad_inputs")
    run = train_tiny_run(folder, max_steps=3)
    config = tiny_config(folder)
    (folder / "tiny.yaml").write_text(config_to_yaml(config))
    (folder / "empty.yaml").write_text("")
    missing_table = override(config, "data", source="nifti", input=str(folder / "scans"), output=str(folder / "none.h5"))
    (folder / "no_table.yaml").write_text(config_to_yaml(missing_table))
    (folder / "no_source.yaml").write_text(config_to_yaml(override(config, "train", init_from=str(folder / "nowhere"))))
    shutil.copy(folder / "tiny.h5", folder / "corrupt.h5")
    _corrupt_every_chunk(folder / "corrupt.h5")
    (folder / "corrupt.yaml").write_text(config_to_yaml(override(config, "data", output=str(folder / "corrupt.h5"))))
    write_nifti(folder / "scan.nii.gz", head_like((20, 24, 30)))
    for name, edit in (("more_couplings", {"num_dense_couplings": 3}), ("fewer_couplings", {"num_dense_couplings": 1})):
        shutil.copytree(run, folder / name)
        _edit_config(folder / name, **edit)
    shutil.copytree(run, folder / "truncated")
    for data in (folder / "truncated").glob("*/*.data-00000-of-00001"):
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    _issue_28_world(folder, config)
    return folder


def _table_variant(folder: Path, name: str, config: object, edit: object) -> None:
    """``name.h5``: a copy of the tiny table changed by ``edit(h5py.File)``; ``name.yaml``: the tiny config reading it."""
    shutil.copy(folder / "tiny.h5", folder / f"{name}.h5")
    with h5py.File(folder / f"{name}.h5", "r+") as f:
        edit(f)  # type: ignore[operator]
    (folder / f"{name}.yaml").write_text(config_to_yaml(override(config, "data", output=str(folder / f"{name}.h5"))))  # type: ignore[arg-type]


def _set_splits(f: h5py.File, old: tuple[str, ...], new: str) -> None:
    splits = [s.decode() if isinstance(s, bytes) else s for s in f["volumes/split"][()]]
    f["volumes/split"][...] = np.array([new if s in old else s for s in splits], dtype=object)


def _issue_28_world(folder: Path, config: object) -> None:
    """The inputs of issue 28's cases."""
    _table_variant(folder, "no_train", config, lambda f: _set_splits(f, ("train",), "test"))
    _table_variant(folder, "bad_pose", config, lambda f: f["pose"].__setitem__(3, 99))
    _table_variant(folder, "no_val", config, lambda f: _set_splits(f, ("val",), "train"))
    shutil.copytree(folder / "run", folder / "run_no_val")
    stored = yaml.safe_load((folder / "run_no_val/config.yaml").read_text())
    stored["data"]["output"] = str(folder / "no_val.h5")
    (folder / "run_no_val/config.yaml").write_text(yaml.safe_dump(stored))
    shutil.copytree(folder / "run", folder / "stopped")  # killed before its first checkpoint: its config and log only
    for name in ("checkpoints", "best"):
        shutil.rmtree(folder / "stopped" / name)
    text = (folder / "tiny.yaml").read_text()
    for name, old, new in (("nan_rate", "learning_rate: 0.001", "learning_rate: .nan"),
                           ("inf_rate", "learning_rate: 0.001", "learning_rate: .inf"),
                           ("huge_flow", "num_filters: 8", "num_filters: 100000000"),
                           ("repeated_key", "learning_rate: 0.001", "learning_rate: 0.001\n  learning_rate: 0.01")):
        assert old in text
        (folder / f"{name}.yaml").write_text(text.replace(old, new, 1))
    (folder / "nifti_source.yaml").write_text(config_to_yaml(override(config, "data", source="nifti", input=str(folder))))  # type: ignore[arg-type]
    (folder / "run" / "nll_test_T4_c3.json").write_text("{}")  # a result test_nll must not replace
    nib.save(nib.Nifti1Image(head_like((20, 24, 30)).astype(np.complex64), np.eye(4)), str(folder / "complex.nii.gz"))
    write_nifti(folder / "coronal.nii.gz", head_like((20, 4, 30)), np.diag([1.0, 6.0, 1.0, 1.0]))  # 4 coronal slices 6 mm apart
    shutil.copytree(folder / "run", folder / "relative_table")  # its table at data/tiny.h5 of the working folder
    stored = yaml.safe_load((folder / "relative_table/config.yaml").read_text())
    stored["data"]["output"] = "data/tiny.h5"
    (folder / "relative_table/config.yaml").write_text(yaml.safe_dump(stored))
    (folder / "data").mkdir()
    for name in ("dup_link", "dup_copy"):  # one scan twice: as a link, as a copy (issue 37, item 6)
        (folder / name).mkdir()
        shutil.copy(folder / "scan.nii.gz", folder / name / "a.nii.gz")
    (folder / "dup_link" / "b.nii.gz").symlink_to(folder / "dup_link" / "a.nii.gz")
    shutil.copy(folder / "scan.nii.gz", folder / "dup_copy" / "b.nii.gz")


def _snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    """Every file (modification time, SHA-256 of its bytes) and folder under ``folder`` (a folder's own time
    changes with the write probe of an output check, which leaves nothing behind)."""
    entries = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            entries[os.path.relpath(os.path.join(root, name), folder)] = (-1, "")
        for name in files:
            path = os.path.join(root, name)
            entries[os.path.relpath(path, folder)] = (os.stat(path).st_mtime_ns, hashlib.sha256(Path(path).read_bytes()).hexdigest())
    return entries


RECONSTRUCT = ("reconstruct.py", "--run", "{w}/run", "--input", "{w}/scan.nii.gz", "--no-progress")

CASES = {
    # a start that fails leaves no run directory, so the retry is not blocked (issue 18, item 3)
    "train: table missing": (("train.py", "{w}/no_table.yaml", "--run-dir", "{w}/new_run"), r"none\.h5: no such file; preprocess"),
    "train: init_from missing": (("train.py", "{w}/no_source.yaml", "--run-dir", "{w}/new_run"),
                                 r"train\.init_from=.*nowhere.*: no such run directory"),
    "train: corrupt HDF5 chunk": (("train.py", "{w}/corrupt.yaml", "--run-dir", "{w}/new_run", "--no-progress"),
                                  r"corrupt\.h5: corrupt image data in slice rows \d+\.\.\d+"),
    "train: run directory under /proc": (("train.py", "{w}/tiny.yaml", "--run-dir", "/proc/bruno_run"),
                                         r"/proc/bruno_run: (cannot write in output folder /proc|cannot create the run directory)"),
    "train: empty YAML": (("train.py", "{w}/empty.yaml"), r"empty\.yaml: is empty, expected a mapping"),
    "train: resume to a step already reached": (
        ("train.py", "{w}/run/config.yaml", "--run-dir", "{w}/run", "--resume", "--max-steps", "2"),
        r"run: --resume to max_steps=2, but the run is already at step 3; pass a larger --max-steps"),
    "restore: config edited, more layers": (("sample_prior.py", "{w}/more_couplings", "--output", "{w}/a.nii.gz"),
                                            r"ckpt-\d+: checkpoint has no value for variable .* \(was config\.yaml edited"),
    "restore: config edited, fewer layers": (("sample_prior.py", "{w}/fewer_couplings", "--output", "{w}/a.nii.gz"),
                                             r"ckpt-\d+: checkpoint holds \d+ model variables, but config\.yaml builds \d+: model/\S+ is left over"),
    "restore: truncated checkpoint": (("test_nll.py", "{w}/truncated", "--num-sequences", "4"),
                                      r"ckpt-\d+: checkpoint is unreadable or truncated"),
    "reconstruct: --output x.png": ((*RECONSTRUCT, "--num-contexts", "2", "--output", "{w}/x.png"),
                                    r"--output .*x\.png: expected a file name ending in \.nii or \.nii\.gz"),
    "reconstruct: output under /proc": ((*RECONSTRUCT, "--num-contexts", "2", "--output", "/proc/x.nii.gz"),
                                        r"/proc/x\.nii\.gz: (cannot write in output folder /proc|output folder /proc is not writable)"),
    "reconstruct: --std onto --output": ((*RECONSTRUCT, "--num-contexts", "2", "--output", "{w}/a.nii.gz", "--std", "{w}/a.nii.gz"),
                                         r"--std .*a\.nii\.gz: is also --output; give each output its own file"),
    "reconstruct: output onto the input": ((*RECONSTRUCT, "--num-contexts", "2", "--output", "{w}/scan.nii.gz", "--overwrite"),
                                           r"--output .*scan\.nii\.gz: is also the input"),
    "reconstruct: --contexts ''": ((*RECONSTRUCT, "--contexts", "", "--output", "{w}/a.nii.gz"),
                                   r"--contexts '': no slice index given"),
    "test_nll: --num-sequences 0": (("test_nll.py", "{w}/run", "--num-sequences", "0"), r"--num-sequences 0: expected an integer >= 1"),
    "test_nll: --num-sequences -5": (("test_nll.py", "{w}/run", "--num-sequences", "-5"), r"--num-sequences -5: expected an integer >= 1"),
    "evaluate: empty glob": (("evaluate.py", "--run", "{w}/run", "--input", "{w}/nothing/*.nii.gz", "--contexts-list", "1,3",
                              "--no-progress"),
                             r"nothing/\*\.nii\.gz: no files match"),
    "evaluate: a k above N": (("evaluate.py", "--run", "{w}/run", "--contexts-list", "1,9"),
                              r"--contexts-list '1,9': k = 9 does not fit, expected each k in \[1, N − 1 = 7\]"),
    "evaluate: k = N": (("evaluate.py", "--run", "{w}/run", "--contexts-list", "8"),
                        r"--contexts-list '8': k = 8 does not fit, expected each k in \[1, N − 1 = 7\] \(N = 8 poses; k = N leaves"),
    "evaluate: --contexts-list 1,,3": (("evaluate.py", "--run", "{w}/run", "--contexts-list", "1,,3"),
                                       r"--contexts-list '1,,3': expected comma-separated integers"),
    "reconstruct: --slices -1,30": ((*RECONSTRUCT, "--slices", "-1,30", "--output", "{w}/a.nii.gz"),
                                    r"scan\.nii\.gz: slice index -1 out of range, expected 0\.\.29"),
    "reconstruct: --slab-mm -1e6 1e6 with --contexts": ((*RECONSTRUCT, "--contexts", "1", "--slab-mm", "-1e6", "1e6", "--output",
                                                         "{w}/a.nii.gz"), r"argument --slab-mm: not allowed with argument --contexts"),
    "reconstruct: --slab-mm with one value": ((*RECONSTRUCT, "--slab-mm", "-1e6", "--output", "{w}/a.nii.gz"),
                                              r"argument --slab-mm: expected 2 arguments \(see reconstruct\.py --help\)"),
    "evaluate: one scan and a link to it": (("evaluate.py", "--run", "{w}/run", "--input", "{w}/dup_link", "--contexts-list", "1",
                                             "--no-progress"), r"dup_link/b\.nii\.gz: the same file as .*dup_link/a\.nii\.gz, "
                                                               r"expected each scan once"),
    "evaluate: one scan and its copy": (("evaluate.py", "--run", "{w}/run", "--protocol", "acquired", "--input", "{w}/dup_copy",
                                         "--contexts-list", "1", "--no-progress"),
                                        r"dup_copy/b\.nii\.gz: a byte-identical copy of the scan as .*dup_copy/a\.nii\.gz"),
    "evaluate: --out a run directory": (("evaluate.py", "--run", "{w}/run", "--contexts-list", "1", "--out", "{w}/run", "--overwrite"),
                                        r"--out .*run: is a run directory; give the results a folder of their own"),
    "evaluate: --out the input folder": (("evaluate.py", "--run", "{w}/run", "--input", "{w}/dup_copy/a.nii.gz", "--contexts-list", "1",
                                          "--out", "{w}/dup_copy"), r"--out .*dup_copy: holds the --input scans"),
    "sample_prior: never makes a table": (("sample_prior.py", "{w}/relative_table", "--output", "{w}/a.nii.gz", "--no-progress"),
                                          r"data/tiny\.h5: no such file \(the run's training table; a reconstruction reads tables, "
                                          r"it never makes one"),
    "reconstruct: --samples 1 --std": ((*RECONSTRUCT, "--num-contexts", "2", "--samples", "1", "--output", "{w}/a.nii.gz", "--std",
                                        "{w}/s.nii.gz"), r"--std .*s\.nii\.gz: a standard deviation needs at least 2 samples per slice, got --samples 1"),
    "reconstruct: --intensity-window inf 1": ((*RECONSTRUCT, "--intensity-window", "inf", "1", "--output", "{w}/a.nii.gz"),
                                              r"--intensity-window inf 1: expected two finite intensities LOW < HIGH"),
    "reconstruct: --intensity-window 500 100": ((*RECONSTRUCT, "--intensity-window", "500", "100", "--output", "{w}/a.nii.gz"),
                                                r"--intensity-window 500 100: expected two finite intensities LOW < HIGH"),
    "reconstruct: --intensity-window 100 100": ((*RECONSTRUCT, "--intensity-window", "100", "100", "--output", "{w}/a.nii.gz"),
                                                r"--intensity-window 100 100: expected"),
    "evaluate: --max-subjects 0": (("evaluate.py", "--run", "{w}/run", "--max-subjects", "0"),
                                   r"--max-subjects 0: expected an integer >= 1"),
    "motion: --max-subjects 0": (("motion_experiment.py", "--run", "{w}/run", "--max-subjects", "0", "--no-progress"),
                                 r"--max-subjects 0: expected an integer >= 1"),
    # issue 28, data destroyed or replaced
    "inspect_h5: --output onto the table": (("inspect_h5.py", "{w}/tiny.h5", "--output", "{w}/tiny.h5", "--overwrite"),
                                            r"--output .*tiny\.h5: expected a file name ending in \.png"),
    "inspect_h5: --output with a table's name": (("inspect_h5.py", "{w}/tiny.h5", "--output", "{w}/new_table.h5"),
                                                 r"--output .*new_table\.h5: expected a file name ending in \.png"),
    "preprocess: --output a.png": (("preprocess.py", "{w}/tiny.yaml", "--output", "{w}/a.png"),
                                   r"command line: data\.output='.*a\.png', expected a path ending in \.h5 or \.hdf5"),
    "benchmark: --out onto the config": (("benchmark.py", "{w}/tiny.yaml", "--out", "{w}/tiny.yaml", "--overwrite"),
                                         r"--out .*tiny\.yaml: expected a file name ending in \.json"),
    "train: a run stopped before its first checkpoint": (
        ("train.py", "{w}/stopped/config.yaml", "--run-dir", "{w}/stopped", "--no-progress"),
        r"stopped: holds a run that stopped before its first checkpoint \(config\.yaml\); pass --overwrite"),
    # tracebacks where one line is promised
    "train: empty train split": (("train.py", "{w}/no_train.yaml", "--run-dir", "{w}/new_run", "--no-progress"),
                                 r"no_train\.h5: the train split has no volumes \(preprocess again"),
    "test_nll: no val volumes": (("test_nll.py", "{w}/run_no_val", "--split", "val", "--no-progress"),
                                 r"--split val: .*no_val\.h5 has no val volumes"),
    "sample_prior: --samples 1000000000": (("sample_prior.py", "{w}/run", "--samples", "1000000000", "--output", "{w}/a.nii.gz",
                                            "--no-progress"),
                                           r"--samples 1000000000: sampling every pose 1000000000 times needs at least [\d.e+]+ GiB, "
                                           r"more than this machine's [\d.]+ GiB of memory"),
    "reconstruct: --samples 1000000000": ((*RECONSTRUCT, "--num-contexts", "2", "--samples", "1000000000", "--output", "{w}/a.nii.gz"),
                                          r"--samples 1000000000: sampling every pose"),
    "train: num_filters 100000000": (("train.py", "{w}/huge_flow.yaml", "--run-dir", "{w}/new_run", "--no-progress"),
                                     r"model\.flow \(num_filters=100000000, .*\): training on 4x4 images a step needs at least "
                                     r"[\d.e+]+ GiB, more than this machine's"),
    # bad values accepted, or refused only after the long work
    "train: learning_rate .nan": (("train.py", "{w}/nan_rate.yaml", "--run-dir", "{w}/new_run"),
                                  r"nan_rate\.yaml: train\.learning_rate=nan, expected a finite number"),
    "train: learning_rate .inf": (("train.py", "{w}/inf_rate.yaml", "--run-dir", "{w}/new_run"),
                                  r"inf_rate\.yaml: train\.learning_rate=inf, expected a finite number"),
    "demo: --samples 0": (("demo.py", "--samples", "0", "--out", "{w}/demo_out", "--run-dir", "{w}/demo_run"),
                          r"--samples 0: expected an integer >= 1"),
    "test_nll: result exists": (("test_nll.py", "{w}/run", "--no-progress"),
                                r"run/nll_test_T4_c3\.json: output file exists \(pass --overwrite"),
    "reconstruct: --std of latent_pca_gp": ((*RECONSTRUCT, "--num-contexts", "2", "--method", "latent_pca_gp", "--output",
                                             "{w}/a.nii.gz", "--std", "{w}/s.nii.gz"),
                                            r"s\.nii\.gz: method latent_pca_gp has no uncertainty map"),
    "evaluate: --contexts-list 1,1": (("evaluate.py", "--run", "{w}/run", "--contexts-list", "1,1"),
                                      r"--contexts-list '1,1': k = 1 given twice"),
    "train: config of another source than its table": (
        ("train.py", "{w}/nifti_source.yaml", "--run-dir", "{w}/new_run", "--no-progress"),
        r"tiny\.h5: was made with data\.source='phantom', but the config has 'nifti'"),
    "train: a key given twice": (("train.py", "{w}/repeated_key.yaml", "--run-dir", "{w}/new_run"),
                                 r"repeated_key\.yaml: not valid YAML \(key 'learning_rate' given twice"),
    "train: --resume --overwrite": (("train.py", "{w}/run/config.yaml", "--run-dir", "{w}/run", "--resume", "--overwrite"),
                                    r"run: --resume and --overwrite together; pass one"),
    "train: pose 99 in the table": (("train.py", "{w}/bad_pose.yaml", "--run-dir", "{w}/new_run", "--no-progress"),
                                    r"bad_pose\.h5: /pose\[3\] = 99, expected 3"),
    "reconstruct: complex NIfTI": (("reconstruct.py", "--run", "{w}/run", "--input", "{w}/complex.nii.gz", "--num-contexts", "2",
                                    "--output", "{w}/a.nii.gz", "--no-progress"),
                                   r"complex\.nii\.gz: complex-valued data \(complex64\), expected real intensities"),
    # messages that mislead
    "reconstruct: output folder is a file": ((*RECONSTRUCT, "--num-contexts", "2", "--output", "{w}/tiny.yaml/a.nii.gz"),
                                             r"tiny\.yaml/a\.nii\.gz: .*tiny\.yaml is a file, expected a folder"),
    "train: run directory under a file": (("train.py", "{w}/tiny.yaml", "--run-dir", "{w}/tiny.yaml/run"),
                                          r"tiny\.yaml/run: .*tiny\.yaml is a file, expected a folder"),
    "evaluate: output folder under a file": (("evaluate.py", "--run", "{w}/run", "--contexts-list", "1,3", "--out", "{w}/tiny.yaml/eval"),
                                             r"tiny\.yaml/eval: .*tiny\.yaml is a file, expected a folder"),
    "reconstruct: a coronal stack": (("reconstruct.py", "--run", "{w}/run", "--input", "{w}/coronal.nii.gz", "--output",
                                      "{w}/a.nii.gz", "--no-progress"),
                                     r"coronal\.nii\.gz: the stack is not axial: its 4 slice\(s\), 6 mm apart, are coronal"),
    "motion: empty glob": (("motion_experiment.py", "--run", "{w}/run", "--input", "{w}/nothing/*.nii.gz", "--no-progress"),
                           r"nothing/\*\.nii\.gz: no files match"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(world: Path, case: str) -> None:
    command, pattern = CASES[case]
    before = _snapshot(world)
    result = run_script(*(part.format(w=world) for part in command), cwd=world)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert re.search(pattern, lines[0]), lines[0]
    assert _snapshot(world) == before


def test_verbose_brings_tensorflow_logging_back(world: Path) -> None:
    quiet = run_script_process("train.py", str(world / "empty.yaml"), cwd=world)  # TensorFlow's start-up: a real process
    verbose = run_script_process("train.py", str(world / "empty.yaml"), "--verbose", cwd=world)
    assert quiet.returncode == verbose.returncode == 2
    assert len(quiet.stderr.splitlines()) == 1 < len(verbose.stderr.splitlines())
    assert verbose.stderr.splitlines()[-1] == quiet.stderr.strip()
