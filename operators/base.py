"""The contract of a row-wise operator: what every stage of the ingest map is.

An operator is a dataclass whose typed fields are its configuration (the YAML section
``phase1.<name>``, or ``phase1.<stage>.<name>`` where several operators share a stage, as
the code filters do), validated in ``__post_init__`` with plain ``ValueError``\\ s that the
settings loader prefixes with the dotted setting. It is called on a file table (the
canonical :data:`operators.schema.FILE_SCHEMA` columns, possibly with the columns earlier
operators added) and returns one with the same rows in the same order:

- live rows it rejects become tombstones through :meth:`RowOperator.remove`, recorded under
  its ``stage`` with one of its declared ``reasons`` and a detail (the measured value);
- it may set the columns it declares in ``writes`` on live rows;
- rows an earlier operator removed pass through unchanged.

:mod:`operators.registry` lists the operators of the ingest map in order; the flow, the
stage order of the manifest's funnel, the report and the contract test
(``tests/test_contract.py``) are derived from that list.
"""

from __future__ import annotations

import dataclasses
import typing

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from operators.schema import live_mask, mark_removed, put_column


@dataclasses.dataclass
class RowOperator:
    """Base of the row-wise operators (see the module docstring)."""

    #: the registry and config name
    name: typing.ClassVar[str] = ""
    #: the ledger stage its removals are recorded under (its name unless it shares one)
    stage: typing.ClassVar[str] = ""
    #: the reasons it may record
    reasons: typing.ClassVar[tuple[str, ...]] = ()
    #: the columns it sets on live rows, or adds (besides content and the tombstone columns)
    writes: typing.ClassVar[tuple[str, ...]] = ()
    #: measures it keeps per row it looked at, as ``score_<name>`` (float32) columns of
    #: ``_work/clean``, removed rows included: a threshold can be re-tuned from them with
    #: one Parquet query, without re-running (Dolma's taggers keep scores the same way)
    scores: typing.ClassVar[tuple[str, ...]] = ()
    #: fields the run fills in from its own settings (the top-level ``tokenizer``, ``s3``),
    #: not configurable in the operator's section
    context: typing.ClassVar[tuple[str, ...]] = ()

    #: False: the operator does not run (``{enabled: false}`` in its section)
    enabled: bool = dataclasses.field(default=True, kw_only=True)

    def setup(self) -> None:
        """Load what the operator needs besides its fields (a tokenizer, a benchmark index)
        once, on the driver, before it is shipped to the workers. The default: nothing."""

    def __call__(self, table: pa.Table) -> pa.Table:
        raise NotImplementedError

    def live(self, table: pa.Table) -> np.ndarray:
        """The rows no operator has removed yet, as a boolean array."""
        return live_mask(table).to_numpy(zero_copy_only=False)

    def live_rows(self, table: pa.Table, languages=None) -> np.ndarray:
        """Indices of the live rows, of the given languages only if ``languages``."""
        live = self.live(table)
        if languages is not None:
            live = live & pc.fill_null(pc.is_in(table.column("lang"), pa.array(
                list(languages), pa.string())), False).to_numpy(zero_copy_only=False)
        return np.flatnonzero(live)

    def remove(self, table: pa.Table, where, reason: str, detail=None) -> pa.Table:
        """Tombstone live rows with ``reason`` (one of :attr:`reasons`) and a detail.

        ``where`` is a boolean mask over the rows, or the row indices; ``detail`` is None,
        one string for all, a string array over all rows, or one value per row of the mask
        (per index of the indices), written as a string."""
        if reason not in self.reasons:
            raise ValueError(f"{type(self).__name__} records reason {reason!r}, not among its "
                             f"declared reasons {self.reasons}")
        if isinstance(where, (pa.Array, pa.ChunkedArray)):
            where = pc.fill_null(where, False).to_numpy(zero_copy_only=False)
        where = np.asarray(where)
        n = table.num_rows
        if where.dtype == np.bool_:
            mask, rows = where, np.flatnonzero(where)
        else:
            rows = where.astype(np.int64)
            mask = np.zeros(n, dtype=bool)
            mask[rows] = True
        if not len(rows):
            return table
        if detail is None or isinstance(detail, str):
            values = detail
        elif isinstance(detail, (pa.Array, pa.ChunkedArray)):  # per row, string-typed
            values = detail
        else:
            per_row = [None] * n
            picked = detail if where.dtype != np.bool_ else [detail[i] for i in rows]
            for i, v in zip(rows.tolist(), picked):
                per_row[i] = None if v is None else str(v)
            values = pa.array(per_row, pa.string())
        return mark_removed(table, pa.array(mask), self.stage, reason, values)

    def keep_score(self, table: pa.Table, name: str, values, rows=None) -> pa.Table:
        """Set ``score_<name>`` (one of :attr:`scores`) to ``values`` at ``rows`` (indices;
        default every row, where ``values`` covers all rows and NaN means not measured)."""
        if name not in self.scores:
            raise ValueError(f"{type(self).__name__} keeps score {name!r}, not among its "
                             f"declared scores {self.scores}")
        column = f"score_{name}"
        out = np.full(table.num_rows, np.nan, dtype=np.float32)
        if rows is None:
            out[:] = np.asarray(values, dtype=np.float32)
        else:
            out[np.asarray(rows, dtype=np.int64)] = np.asarray(values, dtype=np.float32)
        array = pa.array(out, pa.float32(), mask=np.isnan(out))
        return put_column(table, column, array)

    @classmethod
    def config_fields(cls) -> list[dataclasses.Field]:
        """The fields a config section may set."""
        return [f for f in dataclasses.fields(cls) if f.init and f.name not in cls.context]

    def config(self) -> dict:
        """The operator's settings as plain data (what the manifest records)."""
        return {f.name: _plain(getattr(self, f.name)) for f in self.config_fields()}


def _plain(value):
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
