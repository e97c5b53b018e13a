"""Output-path safety (bruno.files): checks before work, stale temporary files, collisions."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bruno.errors import OutputPathError
from bruno.files import atomic_output, check_distinct_outputs, check_extension, check_output_dir, check_output_path


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_killed_writer_leaves_no_part_file_behind_the_next_write(tmp_path: Path) -> None:
    stale = tmp_path / f".table.{_dead_pid()}.0123abcd.part.h5"
    alive = tmp_path / f".table.{os.getppid()}.0123abcd.part.h5"  # a writer that still runs keeps its file
    other = tmp_path / f".other.{_dead_pid()}.0123abcd.part.h5"
    for path in (stale, alive, other):
        path.write_bytes(b"half")
    with atomic_output(str(tmp_path / "table.h5")) as tmp:
        Path(tmp).write_bytes(b"whole")
    assert (tmp_path / "table.h5").read_bytes() == b"whole"
    assert not stale.exists() and alive.exists() and other.exists()


def test_output_under_a_virtual_file_system_is_refused_up_front() -> None:
    if not os.path.isdir("/proc"):
        pytest.skip("no /proc on this system")
    with pytest.raises(OutputPathError, match=r"/proc/x\.nii\.gz: (cannot write in output folder /proc|output folder /proc is not "
                                              r"writable)"):
        check_output_path("/proc/x.nii.gz", overwrite=True)


def test_extensions_and_collisions(tmp_path: Path) -> None:
    check_extension("--output", "a.NII.GZ", (".nii", ".nii.gz"))
    check_extension("--std", None, (".nii", ".nii.gz"))
    with pytest.raises(OutputPathError, match=r"--output x\.png: expected a file name ending in \.nii or \.nii\.gz"):
        check_extension("--output", "x.png", (".nii", ".nii.gz"))
    a, b = str(tmp_path / "a.nii.gz"), str(tmp_path / "b.nii.gz")
    check_distinct_outputs({"--output": a, "--std": b, "--samples-out": None}, [str(tmp_path / "s.nii.gz")])
    with pytest.raises(OutputPathError, match=r"--std .*a\.nii\.gz: is also --output; give each output its own file"):
        check_distinct_outputs({"--output": a, "--std": str(tmp_path / "sub" / ".." / "a.nii.gz")})
    with pytest.raises(OutputPathError, match=r"--output .*s\.nii\.gz: is also the input .*s\.nii\.gz"):
        check_distinct_outputs({"--output": str(tmp_path / "s.nii.gz")}, [str(tmp_path / "s.nii.gz")])


def test_output_folder_checks_create_nothing(tmp_path: Path) -> None:
    check_output_dir(str(tmp_path / "new" / "deeper"), ["results.md"], overwrite=False)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "results.md").write_text("kept")
    with pytest.raises(OutputPathError, match=r"results\.md: output file exists"):
        check_output_dir(str(tmp_path / "old"), ["results.md"], overwrite=False)
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputPathError, match=r"file: is a file, expected an output folder"):
        check_output_dir(str(tmp_path / "file"), ["results.md"], overwrite=True)
