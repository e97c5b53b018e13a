"""``scripts/motion_experiment.py``'s options read into the study's settings (:mod:`bruno.experiments.motion.study`)."""
from __future__ import annotations

from typing import Optional

from bruno.commands.options import check_positive, parse_contexts
from bruno.experiments.motion.study import MotionSettings, default_contexts

__all__ = ["checked_settings", "study_contexts"]


def checked_settings(translation_mm: float, law: str, sigma: float, svr_sigma: float, svr_iterations: int,
                     search_mm: float | None, num_samples: int, seed: int) -> MotionSettings:
    """The settings from ``scripts/motion_experiment.py``'s options, each checked (an error naming its flag);
    ``search_mm`` None: twice ``translation_mm``, at least 1 mm."""
    search_mm = max(2.0 * translation_mm, 1.0) if search_mm is None else search_mm
    for flag, value, allow_zero in (("--translation-mm", translation_mm, True), ("--sigma", sigma, False),
                                    ("--svr-sigma", svr_sigma, False), ("--svr-iterations", svr_iterations, True),
                                    ("--samples", num_samples, False), ("--search-mm", search_mm, False)):
        check_positive(flag, value, allow_zero)
    return MotionSettings(translation_mm, law, sigma, svr_sigma, svr_iterations, search_mm, num_samples, seed)


def study_contexts(text: Optional[str], num_poses: int) -> list[int]:
    """``--contexts`` (comma-separated poses, checked against N = ``num_poses``), or by default 10, 30, 50, 70 of
    N = 80 scaled to N (:func:`~bruno.experiments.motion.study.default_contexts`)."""
    return parse_contexts(text, num_poses) if text is not None else default_contexts(num_poses)
