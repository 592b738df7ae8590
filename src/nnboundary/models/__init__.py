"""Models: the networks a run trains and how a trained one is run again.

``networks`` builds every model (a backbone, then the shared head ending in the bottleneck and
the last layer), with ``backbones`` for the built-in archs and ``user`` for a config's own
networks; ``restore`` rebuilds a trained network from its checkpoint file, in numpy
(``numpy_mlp``, no torch) where it is the built-in MLP, else in PyTorch.
"""
