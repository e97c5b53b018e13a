"""Convert NIfTI volumes (or the built-in phantom population) into an HDF5 slice-pose table.

Example:
    python scripts/preprocess.py config_rnn/ixi.yaml
    python scripts/preprocess.py config_rnn/adni.yaml --input /data/adni --output data/adni.h5
"""
from __future__ import annotations

import logging
import time

from _cli import make_parser, run

from bruno.config import load_config, override
from bruno.data.preprocess import build_slice_table
from bruno.errors import ConfigError

logger = logging.getLogger("preprocess")


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("config", help="experiment YAML file (config_rnn/*.yaml)")
    parser.add_argument("--input", help="folder, glob pattern or file of .nii/.nii.gz volumes (overrides data.input; implies data.source=nifti)")
    parser.add_argument("--output", help="HDF5 file to write (overrides data.output)")
    parser.add_argument("--overwrite", action="store_true", help="replace the output file if it exists")
    parser.add_argument("--skip-bad", action="store_true", help="skip unusable volumes with a warning instead of stopping")
    args = parser.parse_args()

    config = load_config(args.config)
    overrides = {k: v for k, v in (("input", args.input), ("output", args.output)) if v is not None}
    if args.input is not None:  # files given: read them, whatever the config's default source
        overrides["source"] = "nifti"
    config = override(config, "data", **overrides)
    start = time.perf_counter()
    try:
        table = build_slice_table(config, overwrite=args.overwrite, skip_bad=args.skip_bad, progress=not args.no_progress)
    except ConfigError as err:  # a key the run needed but the file left unset
        raise ConfigError(f"{args.config}: {err}") from None
    skipped = f" ({len(table.skipped)} unusable file(s) skipped, as warned above)" if table.skipped else ""
    logger.info("wrote %r in %.1f s%s", table, time.perf_counter() - start, skipped)


if __name__ == "__main__":
    run(main)
