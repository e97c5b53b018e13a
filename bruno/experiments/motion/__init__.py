"""The motion study (SPEC §5.4): simulated motion-corrupted stacks (:mod:`.simulate`), slice-to-volume
registration (:mod:`.svr`), and the experiment comparing Gaussian-average and BRUNO initial volumes (:mod:`.study`)."""
