"""Safe output files: checked before work starts, written to a temporary name, renamed when complete; and the JSON file
of a setting chosen by a search (:class:`StoredSearch`), read back only for what it was fitted to.

A temporary file is named ``.<stem>.<pid>.<hex>.part<ext>`` beside its target; one left by a
process that was killed (``kill -9``, a power cut) is deleted the next time that target is written.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import resource
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Optional

from bruno.errors import BrunoError, DataFileError, DiskFullError, OutputPathError, disk_full_reason, is_disk_full

__all__ = ["NIFTI_EXTENSIONS", "SEARCH_FORMAT", "StoredSearch", "atomic_output", "check_distinct_outputs", "check_extension",
           "check_output_dir", "check_output_path", "check_outputs", "check_writable_folder", "existing_folder_above",
           "png_beside", "write_text_files"]

NIFTI_EXTENSIONS = (".nii", ".nii.gz")

logger = logging.getLogger(__name__)


def _split_name(path: str) -> tuple[str, str, str]:
    """(folder, stem, extension) with ``.nii.gz`` as one extension."""
    folder, name = os.path.split(os.path.abspath(path))
    stem, ext = os.path.splitext(name)
    if stem.endswith(".nii"):
        stem, ext = stem[:-4], ".nii" + ext
    return folder, stem, ext


def room_to_write(path: str) -> int:
    """Bytes that file ``path`` can still grow by: the free space of its disk, and under a file-size limit (``ulimit
    -f``) that limit less its size. A writer that cannot survive a failed write (HDF5 crashes on one) checks it first."""
    folder = os.path.dirname(os.path.abspath(path))
    room = shutil.disk_usage(folder).free
    limit, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    if limit != resource.RLIM_INFINITY:
        room = min(room, limit - (os.path.getsize(path) if os.path.exists(path) else 0))
    return int(room)


def check_room(sizes: Mapping[str, int]) -> None:
    """Refuse, before any of them is written, outputs (path → an upper bound of its bytes) that their disks or the
    file-size limit cannot hold: a set of outputs is written whole or not at all.

    Raises:
        DiskFullError: naming the first output that does not fit.
    """
    limit, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    free: dict[int, int] = {}
    for path, size in sizes.items():
        folder = os.path.dirname(os.path.abspath(path))
        device = os.stat(folder).st_dev
        free.setdefault(device, shutil.disk_usage(folder).free)
        free[device] -= size
        if limit != resource.RLIM_INFINITY and size > limit:
            raise DiskFullError(f"{path}: no space to write it (up to {size / 2**20:.2f} MiB, over the file-size limit of "
                                f"{limit / 2**20:.2f} MiB); nothing was written")
        if free[device] < 0:
            raise DiskFullError(f"{path}: no space to write it (up to {size / 2**20:.2f} MiB; the outputs need "
                                f"{-free[device] / 2**20:.2f} MiB more than the disk has free); nothing was written")


def check_writable_folder(path: str, folder: str) -> None:
    """Refuse ``folder`` (where ``path`` goes) unless a file can really be created in it: ``os.access``
    says yes to root on read-only or virtual file systems (/proc). The probe file is removed at once.

    Raises:
        OutputPathError: naming ``path`` and the folder.
    """
    if not os.access(folder, os.W_OK):
        raise OutputPathError(f"{path}: output folder {folder} is not writable")
    probe = os.path.join(folder, f".write-probe.{os.getpid()}.{uuid.uuid4().hex[:8]}")
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        os.remove(probe)
    except OSError as err:
        raise OutputPathError(f"{path}: cannot write in output folder {folder} ({err.strerror})") from None


def check_output_path(path: str, overwrite: bool) -> None:
    """Refuse an output path before any work is done.

    Raises:
        OutputPathError: the folder is missing or not writable, the path is a folder, or the file
            exists and ``overwrite`` is false.
    """
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        existing_folder_above(path)  # a file on the way is the better message
        raise OutputPathError(f"{path}: output folder {folder} does not exist")
    check_writable_folder(path, folder)
    _check_target(path, overwrite)


def _check_target(path: str, overwrite: bool) -> None:
    if os.path.isdir(path):
        raise OutputPathError(f"{path}: is a folder, expected an output file path")
    if os.path.exists(path) and not overwrite:
        raise OutputPathError(f"{path}: output file exists (pass --overwrite to replace it)")


def existing_folder_above(path: str) -> str:
    """The nearest folder above ``path`` that exists (what must let the rest be created).

    Raises:
        OutputPathError: what exists there is a file, not a folder.
    """
    above = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(above):
        above = os.path.dirname(above)
    if not os.path.isdir(above):
        raise OutputPathError(f"{path}: {above} is a file, expected a folder")
    return above


def check_output_dir(folder: str, names: Iterable[str], overwrite: bool) -> None:
    """Refuse an output folder (and the files ``names`` in it) before any work, creating nothing:
    a folder that does not exist yet needs a writable parent, and is made only when results are written.

    Raises:
        OutputPathError: a file where the folder should be, an unwritable parent, or an existing file.
    """
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise OutputPathError(f"{folder}: is a file, expected an output folder")
    if os.path.isdir(folder):
        check_writable_folder(folder, folder)  # one probe for all the files
        for name in names:
            _check_target(os.path.join(folder, name), overwrite)
        return
    check_writable_folder(folder, existing_folder_above(folder))


def check_extension(flag: str, path: Optional[str], extensions: tuple[str, ...]) -> None:
    """Refuse ``path`` (given by ``flag``) unless it ends with one of ``extensions``.

    Raises:
        OutputPathError: another extension.
    """
    if path is not None and not path.lower().endswith(extensions):
        raise OutputPathError(f"{flag} {path}: expected a file name ending in {' or '.join(extensions)}")


def check_distinct_outputs(outputs: Mapping[str, Optional[str]], inputs: Iterable[str] = ()) -> None:
    """Refuse two outputs that name the same file, and an output that names an input.

    Args:
        outputs: flag → output path (None: not asked for).
        inputs: paths the command reads.

    Raises:
        OutputPathError: naming both flags (or the input).
    """
    seen: dict[str, str] = {}
    for source in inputs:
        seen.setdefault(os.path.realpath(source), f"the input {source}")
    for flag, path in outputs.items():
        if path is None:
            continue
        key = os.path.realpath(path)
        if key in seen:
            raise OutputPathError(f"{flag} {path}: is also {seen[key]}; give each output its own file")
        seen[key] = flag


def check_outputs(niftis: Mapping[str, Optional[str]], pngs: Mapping[str, Optional[str]], overwrite: bool,
                  inputs: Iterable[str] = (), json: Optional[Mapping[str, Optional[str]]] = None) -> None:
    """All checks of a command's output files before any work: NIfTI, PNG (and JSON) extensions, distinct
    files that are not inputs, each writable (and absent unless ``overwrite``). Keys label the outputs
    (e.g. their flags) in the errors; None values are outputs not asked for.

    Raises:
        OutputPathError: the first output that fails.
    """
    json = json or {}
    for group, extensions in ((niftis, NIFTI_EXTENSIONS), (pngs, (".png",)), (json, (".json",))):
        for label, path in group.items():
            check_extension(label, path, extensions)
    check_distinct_outputs({**niftis, **pngs, **json}, inputs)
    for path in (*niftis.values(), *pngs.values(), *json.values()):
        if path is not None:
            check_output_path(path, overwrite)


def png_beside(path: str) -> str:
    """``scan.nii.gz`` → ``scan.png``: the figure that goes with a NIfTI output."""
    return path.removesuffix(".gz").removesuffix(".nii") + ".png"


def _remove_stale_parts(folder: str, stem: str, ext: str) -> None:
    """Delete the temporary files of ``stem`` left by processes that no longer run."""
    pattern = re.compile(rf"^\.{re.escape(stem)}\.(\d+)\.[0-9a-f]{{8}}\.part{re.escape(ext)}$")
    for name in os.listdir(folder):
        found = pattern.match(name)
        if found is None or int(found.group(1)) == os.getpid():
            continue
        try:
            os.kill(int(found.group(1)), 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                os.remove(os.path.join(folder, name))
        except OSError:
            pass  # alive, another user's


@contextlib.contextmanager
def atomic_output(path: str, overwrite: bool = False) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``, on error delete it.

    The temporary name keeps the extension of ``path`` (some writers choose the format by it).

    Raises:
        OutputPathError: as :func:`check_output_path`.
    """
    check_output_path(path, overwrite)
    folder, stem, ext = _split_name(path)
    _remove_stale_parts(folder, stem, ext)
    tmp = os.path.join(folder, f".{stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part{ext}")
    try:
        yield tmp
        os.replace(tmp, path)
    except Exception as err:  # a full disk is one line naming the file meant, not the temporary one
        if is_disk_full(err) and not isinstance(err, BrunoError):
            raise DiskFullError(f"{path}: no space to write it ({disk_full_reason(err)}); "
                                f"{'the file there before is kept' if os.path.exists(path) else 'nothing was written'}") from None
        raise
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text_files(out_dir: str, texts: Mapping[str, str], overwrite: bool = False) -> list[str]:
    """Write each ``name → text`` as ``out_dir/name`` (UTF-8, atomically; the folder is made if
    missing); return the paths.

    Raises:
        OutputPathError: as :func:`check_output_path`.
    """
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for name, text in texts.items():
        path = os.path.join(out_dir, name)
        with atomic_output(path, overwrite) as tmp, open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        written.append(path)
    return written


SEARCH_FORMAT = 2  # 2: "fitted_to" holds the fingerprint; before, a classical file had only its train subjects


@dataclass(frozen=True)
class StoredSearch:
    """Where one tuner's choice lives and what it must have been fitted to.

    Attributes:
        path: the JSON file.
        what: what it holds, for messages (``baseline settings``).
        fitted_to: the fingerprint a stored choice must match (e.g. :func:`split_fingerprint`, a flow's weights).
        check: raises KeyError, ValueError or TypeError where the stored ``chosen`` is out of range.
        legacy: the fingerprint of a file written before :data:`SEARCH_FORMAT` (None: such files had none, and are
            trusted with a note in the log).
    """

    path: str
    what: str
    fitted_to: Mapping[str, Any]
    check: Callable[[dict[str, Any]], None]
    legacy: Optional[Callable[[dict[str, Any]], dict[str, Any]]] = None

    def load(self) -> Optional[dict[str, Any]]:
        """The stored search, or None where there is none.

        Raises:
            DataFileError: unreadable, of an unknown format, a chosen value out of range, or fitted to something else.
        """
        if not os.path.exists(self.path):
            return None
        try:
            with open(self.path, encoding="utf-8") as f:
                record = json.load(f)
            fitted_to = self._fitted_to(record)
            self.check(record["chosen"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            raise DataFileError(f"{self.path}: not a readable {self.what} file ({type(err).__name__}: {err}); "
                                "delete it to search again") from None
        if record.get("format") == SEARCH_FORMAT and (missing := sorted(set(self.fitted_to) - set(fitted_to))):
            raise DataFileError(f"{self.path}: written before its choice depended on {', '.join(missing)}; delete it to search "
                                "again")
        for key, value in fitted_to.items():
            if key in self.fitted_to and value != self.fitted_to[key]:
                name = key.removesuffix("_sha1").replace("_", " ")
                raise DataFileError(f"{self.path}: chosen for other {name} than now ({key} differs); delete it to search again")
        return record  # type: ignore[no-any-return]

    def _fitted_to(self, record: dict[str, Any]) -> dict[str, Any]:
        if record.get("format") == SEARCH_FORMAT:
            return dict(record["fitted_to"])
        if "format" in record and not (record["format"] == 1 and self.legacy is not None):
            raise ValueError(f"format {record['format']!r}, expected {SEARCH_FORMAT}")
        if self.legacy is None:
            logger.info("%s: written before searches recorded what they were fitted to; used as it is", self.path)
            return {}
        return self.legacy(record)

    def store(self, chosen: dict[str, Any], grid: Any, **details: Any) -> dict[str, Any]:
        """Write the search (replacing a stale one) and return it as stored."""
        record = {"format": SEARCH_FORMAT, "what": self.what, "fitted_to": dict(self.fitted_to), "chosen": chosen,
                  "criterion": "mean val SSIM over slices, volumes and k", **details, "grid": grid}
        write_text_files(os.path.dirname(os.path.abspath(self.path)), {os.path.basename(self.path): json.dumps(record, indent=1)},
                         overwrite=True)
        logger.info("%s %s stored in %s", self.what, json.dumps(chosen), self.path)
        return record

    def load_or_search(self, search: Callable[[], tuple[dict[str, Any], Any, dict[str, Any]]]) -> dict[str, Any]:
        """The stored search, or (none stored) ``search()`` → (chosen, grid, details), stored.

        Raises:
            DataFileError: as :meth:`load`.
        """
        record = self.load()
        if record is None:
            logger.info("no %s at %s: choosing them on the val split (once)", self.what, self.path)
            chosen, grid, details = search()
            record = self.store(chosen, grid, **details)
        return record
