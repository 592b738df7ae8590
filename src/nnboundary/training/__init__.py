"""Training: the ``full`` regime (``train``: the whole network) and the ``retrain_last`` regime
(``retrain``: a re-initialised last layer on frozen features), both through one loop.

``loop`` is the epoch loop (stopping, checkpoints kept, backtracking), ``schedule`` the step
size and the plan of a loop, ``resume`` the resumable checkpoint of a killed job; ``step`` is
one optimisation step (``kernels`` and ``jit_kernels``: the fused CPU kernels of the MLP),
``losses`` the losses, ``optim`` the optimizers, ``precision`` seeds, dtypes and autocast,
``batchnorm`` what BatchNorm and dropout networks need.
"""
