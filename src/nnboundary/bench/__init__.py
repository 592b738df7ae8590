"""Benchmarks that print numbers, never timed tests: SVM fits (``svm``) and training steps and
throughput (``training``); the command line is ``nnboundary benchmark``
(:mod:`nnboundary.stages.benchmark`).
"""
