"""mental-maps: Conditional BRUNO for generating whole 3D volumes from a few 2D slices.

A TensorFlow 2 / TensorFlow Probability reproduction of Hou et al. (2019), "Flexible Conditional
Image Generation of Missing Data with Learned Mental Maps", built on Korshunova et al.'s
Conditional BRUNO. The layers, top to bottom (``docs/architecture.md``; import-linter contracts in
``pyproject.toml``): ``commands`` (what the scripts run) → ``experiments`` (evaluation, motion study, benchmark)
→ ``reconstruction`` | ``training`` → ``runs`` (the run directory, a model restored) → ``models`` →
``processes`` | ``flows`` | ``plots`` → ``metrics`` | ``baselines`` | ``data`` | ``memory`` | ``precision`` |
``units`` → ``config`` → ``files`` → ``errors``.
"""
