"""The files passed between stages, each with one writer and one reader, every write atomic.

In the order of the data flow: ``dataset`` (the prepared ``.npz``), ``checkpoint`` (the trained
network, ``checkpoints.pt``; ``ptfile`` reads it without torch), ``history`` (``history.tsv``),
``features`` (one Parquet file per checkpoint), ``svmfile`` (``svm.json``), ``tables`` (Parquet
tables, CSV and JSON) and ``atomic``, the one writer they all go through.
"""
