"""Data: the datasets a run trains on, made from their sources (``sources`` for the built-in
generators and packaged sets, ``torchvision_sets`` for torchvision's files, a config's own
``module:function`` or ``file:``), checked, split and standardised (``make``).
"""
