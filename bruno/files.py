"""Safe output files: checked before work starts, written to a temporary name, renamed when complete."""
from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator, Mapping

from bruno.errors import OutputPathError

__all__ = ["atomic_output", "check_output_path", "write_text_files"]


def check_output_path(path: str, overwrite: bool) -> None:
    """Refuse an output path before any work is done.

    Raises:
        OutputPathError: the folder is missing or not writable, the path is a folder, or the file
            exists and ``overwrite`` is false.
    """
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise OutputPathError(f"{path}: output folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise OutputPathError(f"{path}: output folder {folder} is not writable")
    if os.path.isdir(path):
        raise OutputPathError(f"{path}: is a folder, expected an output file path")
    if os.path.exists(path) and not overwrite:
        raise OutputPathError(f"{path}: output file exists (pass --overwrite to replace it)")


@contextlib.contextmanager
def atomic_output(path: str, overwrite: bool = False) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``, on error delete it.

    The temporary name keeps the extension of ``path`` (some writers choose the format by it).

    Raises:
        OutputPathError: as :func:`check_output_path`.
    """
    check_output_path(path, overwrite)
    folder, name = os.path.split(os.path.abspath(path))
    stem, ext = os.path.splitext(name)
    if stem.endswith(".nii"):
        stem, ext = stem[:-4], ".nii" + ext
    tmp = os.path.join(folder, f".{stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part{ext}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text_files(out_dir: str, texts: Mapping[str, str], overwrite: bool = False) -> list[str]:
    """Write each ``name → text`` as ``out_dir/name`` (UTF-8, atomically); return the paths.

    Raises:
        OutputPathError: as :func:`check_output_path`.
    """
    written = []
    for name, text in texts.items():
        path = os.path.join(out_dir, name)
        with atomic_output(path, overwrite) as tmp, open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        written.append(path)
    return written
