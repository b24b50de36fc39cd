"""Row filters of phase 1, one module each: a :class:`operators.base.RowOperator` with its
thresholds as typed fields. :mod:`operators.registry` puts them in the ingest map's order."""
