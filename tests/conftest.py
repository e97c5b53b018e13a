"""Shared fixtures: tiny configs and NIfTI files generated in tmp_path."""
from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bruno.config import Config, DataConfig, PhantomConfig, SplitConfig, TrainConfig

SMALL_TRAIN = TrainConfig(batch_size=2, seq_len=4, num_context=3)

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    """Save ``data`` as NIfTI at ``path`` (identity-spacing RAS affine by default)."""
    nib.save(nib.Nifti1Image(np.asarray(data), np.eye(4) if affine is None else affine), str(path))
    return path


def head_like(shape: tuple[int, int, int] = (20, 24, 30), seed: int = 0) -> np.ndarray:
    """A float32 volume with a bright ellipsoid and some noise: contrast everywhere it matters."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"), axis=-1)
    inside = ((grid / 0.8) ** 2).sum(-1) < 1
    return (100.0 * inside + rng.normal(0, 5, size=shape) ** 2).astype(np.float32)


def nifti_config(tmp_path: Path, **data: object) -> Config:
    """A config over NIfTI files in ``tmp_path/in``, writing ``tmp_path/out.h5``; small sizes."""
    values: dict[str, object] = dict(
        source="nifti", input=str(tmp_path / "in"), num_poses=6, image_size=16, slab_fraction=0.8,
        split=SplitConfig(train=0.5, val=0.25, test=0.25, seed=0), output=str(tmp_path / "out.h5"),
    )
    values.update(data)
    return Config(data=DataConfig(**values), train=SMALL_TRAIN)  # type: ignore[arg-type]


def phantom_config(tmp_path: Path, subjects: int = 6, **data: object) -> Config:
    values: dict[str, object] = dict(
        source="phantom", phantom=PhantomConfig(num_subjects=subjects, size=24, spacing_mm=8.0, seed=3),
        num_poses=8, image_size=16, split=SplitConfig(train=0.5, val=0.25, test=0.25, seed=0),
        output=str(tmp_path / "phantom.h5"),
    )
    values.update(data)
    return Config(data=DataConfig(**values), train=SMALL_TRAIN)  # type: ignore[arg-type]


@pytest.fixture
def input_dir(tmp_path: Path) -> Path:
    """Four valid volumes of three subjects (sub-b has two scans)."""
    folder = tmp_path / "in"
    folder.mkdir()
    for i, name in enumerate(["sub-a_t1", "sub-b_t1", "sub-b_t2", "sub-c_t1"]):
        write_nifti(folder / f"{name}.nii.gz", head_like(seed=i), np.diag([2.0, 2.0, 2.0, 1.0]))
    return folder


@pytest.fixture
def shared_ixi() -> Path:
    folder = SHARED_DATA / "ixi_t1_2mm"
    if not folder.is_dir():
        pytest.skip(f"real IXI data not available at {folder} (only present on development machines)")
    return folder


def train_tiny_run(folder: Path, max_steps: int) -> Path:
    """``config_rnn/tiny.yaml`` trained for ``max_steps`` steps in ``folder/run`` (its table in ``folder``)."""
    from bruno.config import load_config, override
    from bruno.runs import make_deterministic, prepare_run_dir
    from bruno.training import Trainer

    config = override(load_config(REPO / "config_rnn/tiny.yaml"), "data", output=str(folder / "tiny.h5"))
    run = folder / "run"
    prepare_run_dir(str(run), config, False, False)
    make_deterministic(0)
    Trainer(config, str(run), progress=False).train(max_steps=max_steps)
    return run


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0
