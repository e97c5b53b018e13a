"""Data: NIfTI input, the phantom population, slice extraction, the HDF5 slice-pose table.

The TensorFlow sequence sampler lives in :mod:`bruno.data.sampler` and is not imported here, so
preprocessing runs without loading TensorFlow.
"""
