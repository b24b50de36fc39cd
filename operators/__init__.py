"""The curation library: typed, deterministic transformations of ``pyarrow.Table`` batches.

Operators know nothing about Ray; the stage layer in ``flows/`` maps them over datasets.
"""
