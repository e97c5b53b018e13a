"""The commands behind the scripts, above the library: each reads a script's options into one request, checks the
rules between them (errors name the flag: the options are the commands' interface), then does the work.

* :mod:`.options`: option values read and checked (poses, k values, sample counts, ``--samples fast``);
* :mod:`.train`: train a run, then make its test-time state; :mod:`.launch_workers`: local training workers;
* :mod:`.reconstruct`: ``scripts/reconstruct.py``; :mod:`.evaluate`: ``scripts/evaluate.py``;
* :mod:`.motion`: ``scripts/motion_experiment.py``'s settings.
"""
