"""The conditional RealNVP of Conditional BRUNO (SPEC §2) as TensorFlow Probability bijectors.

Modules: ``layers`` (weight-normalised layers with data-dependent init, pose embedding, s/t
networks), ``coupling`` (masks and the conv/dense affine coupling bijectors), ``squeeze``,
``logit`` (dequantised pixels → logit space), ``realnvp`` (the multi-scale flow).
"""
