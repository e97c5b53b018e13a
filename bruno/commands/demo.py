"""``scripts/demo.py``: train the small demo model on the built-in phantom, then reconstruct a held-out phantom head
from a simulated 5-slice acquisition through the same path as real sparse scans, and compare it with the truth it
never read (the script's docstring says what each output is)."""
from __future__ import annotations

import os
from typing import Optional

from bruno.commands.options import check_count
from bruno.commands.train import train_unless_done
from bruno.config import load_config, override
from bruno.data.acquisition import spread_stack
from bruno.data.phantom import phantom_subject
from bruno.data.preprocess import load_slice_table
from bruno.experiments.acquired_protocol import compare_on_truth
from bruno.files import check_output_dir
from bruno.plots import save_comparison_figure
from bruno.reconstruction import ModelSampling, save_nifti
from bruno.reconstruction.pipeline import prepare_acquired, reconstruct_and_write
from bruno.runs import RunDir, make_deterministic, restore_model

__all__ = ["CONFIG", "NUM_ACQUIRED", "OUTPUTS", "run_demo"]

CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "config_rnn", "demo.yaml")
NUM_ACQUIRED = 5
OUTPUTS = ("acquired.nii.gz", "truth.nii.gz", "reconstruction.nii.gz", "std.nii.gz", "reconstruction.png")


def run_demo(run_dir: str, out: str, samples: int, max_steps: Optional[int], seed: int, overwrite: bool, progress: bool) -> str:
    """Check the outputs, train (or reuse) ``run_dir``, reconstruct and write ``out``; the summary line to print.

    Raises:
        ConfigError, OutputPathError: a bad count or an output that exists (without ``overwrite``).
    """
    check_count("--samples", samples)
    paths = {name: os.path.join(out, name) for name in OUTPUTS}
    check_output_dir(out, OUTPUTS, overwrite)
    config = override(load_config(CONFIG), "train", **({} if max_steps is None else {"max_steps": max_steps}))
    table = load_slice_table(config, progress=progress)
    train_unless_done(config, run_dir, seed, progress=progress)
    model, _, step = restore_model(run_dir)
    make_deterministic(seed)
    os.makedirs(out, exist_ok=True)

    info = table.info(int(table.volumes_in("test")[0]))
    volume = phantom_subject(int(info.subject.rsplit("_", 1)[1]), config.data.phantom)
    save_nifti(paths["acquired.nii.gz"], *spread_stack(volume, info.slab, NUM_ACQUIRED), overwrite)
    save_nifti(paths["truth.nii.gz"], volume.data, volume.affine, overwrite)

    prepared = prepare_acquired([paths["acquired.nii.gz"]], config.data, RunDir(run_dir).inference(), model)
    assert prepared.acquisition is not None
    result = reconstruct_and_write(ModelSampling(model), prepared, {"mean": paths["reconstruction.nii.gz"], "std": paths["std.nii.gz"]},
                                   None, samples, seed, overwrite, progress)
    assert result.samples is not None
    seen = compare_on_truth(info, table.read(table.rows_of(info.index)), prepared.acquisition, prepared.affine,
                            prepared.contexts, result.samples)
    save_comparison_figure(seen.truth, seen.mean, seen.std, seen.true_poses, paths["reconstruction.png"],
                           f"demo ({run_dir}, step {step}): {info.subject} from {NUM_ACQUIRED} acquired slices, "
                           f"SSIM {seen.ssim:.3f}", overwrite)
    return (f"{info.subject}: {NUM_ACQUIRED} acquired slices placed at poses {seen.placed_poses}, true {seen.true_poses} "
            f"(placement error: {seen.placement_error}); mean SSIM {seen.ssim:.3f} over the "
            f"{len(seen.truth) - NUM_ACQUIRED} slices it did not see\nwrote " + ", ".join(paths.values()))
