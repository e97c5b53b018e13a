"""Summarise a preprocessed HDF5 slice table and save a PNG montage of one volume's slices.

The montage shows every pose of one subject (anterior at the top of each axial slice, the subject's
left on the left) plus mid-sagittal and mid-coronal reformats, to check orientation and intensity.

Example:
    python scripts/inspect_h5.py data/ixi.h5 --subject IXI012
"""
from __future__ import annotations

import logging
import os

from _cli import make_parser, run

from bruno.data.nifti import affine_spacing
from bruno.data.table import SPLITS, SliceTable
from bruno.errors import DataFileError
from bruno.files import check_outputs
from bruno.plots import save_slice_montage

logger = logging.getLogger("inspect_h5")


def main() -> None:
    parser = make_parser(__doc__, progress=False)
    parser.add_argument("table", help="HDF5 file written by scripts/preprocess.py")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--volume", type=int, default=0, help="row of the volume table to show (default 0)")
    which.add_argument("--subject", help="subject id to show (its first volume)")
    parser.add_argument("--output", help="PNG to write (default: <table>_<subject>.png beside the table)")
    parser.add_argument("--overwrite", action="store_true", help="replace the PNG if it exists")
    args = parser.parse_args()

    check_outputs({}, {"--output": args.output}, args.overwrite, [args.table])  # before reading: never the table itself
    table = SliceTable(args.table)
    counts = ", ".join(f"{s} {len(table.volumes_in(s))}" for s in SPLITS)
    logger.info("%s: %d volumes (%s), %d poses of %dx%d, %d skipped files",
                args.table, table.num_volumes, counts, table.num_poses, table.image_size, table.image_size,
                len(table.skipped))
    index = args.volume
    if args.subject is not None:
        matches = [i for i in range(table.num_volumes) if table.info(i).subject == args.subject]
        if not matches:
            raise DataFileError(f"{args.table}: no volume of subject {args.subject!r}")
        index = matches[0]
    if not 0 <= index < table.num_volumes:
        raise DataFileError(f"{args.table}: --volume {index} out of range, expected 0..{table.num_volumes - 1}")
    info = table.info(index)
    images = table.read(table.rows_of(index))
    spacing = affine_spacing(info.affine)
    output = args.output or f"{os.path.splitext(args.table)[0]}_{info.subject}.png"
    check_outputs({}, {"--output": output}, args.overwrite, [args.table])
    title = (f"{info.subject} ({info.split}) {info.source}\n"
             f"slab {info.slab[0]}:{info.slab[1]} of {info.original_shape}, "
             f"intensity {info.intensity[0]:.4g}..{info.intensity[1]:.4g} -> 0..255, "
             f"pixel {spacing[0]:.2f}x{spacing[1]:.2f} mm, pose step {spacing[2]:.2f} mm")
    save_slice_montage(images, output, title, spacing=spacing, overwrite=args.overwrite)
    logger.info("wrote %s", output)


if __name__ == "__main__":
    run(main)
