"""mental-maps: Conditional BRUNO for generating whole 3D volumes from a few 2D slices.

A TensorFlow 2 / TensorFlow Probability reproduction of Hou et al. (2019), "Flexible Conditional
Image Generation of Missing Data with Learned Mental Maps", built on Korshunova et al.'s
Conditional BRUNO. Sub-packages: ``bruno.data`` (NIfTI to HDF5 slice-pose tables, the phantom
population, sequence sampling) and ``bruno.config`` (experiment configs).
"""
