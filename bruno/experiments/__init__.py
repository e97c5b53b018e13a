"""Experiments and tools built on the library, which never imports them: the paper's evaluation
(:mod:`.evaluation`, with the acquired-slices protocol :mod:`.acquired_protocol` and the sample-count
study :mod:`.sample_budget`), the motion study (:mod:`.motion`) and the speed benchmark (:mod:`.benchmark`)."""
