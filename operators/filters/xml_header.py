"""StarCoder's XML filter: an XML declaration at the top of a file of a code language."""

from __future__ import annotations

import dataclasses

import pyarrow as pa
import pyarrow.compute as pc

from operators.base import RowOperator


@dataclasses.dataclass
class XmlHeaderFilter(RowOperator):
    """Files that start with an XML declaration (``<?xml``) but carry a code language's
    extension (StarCoder's XML filter); markup languages are exempt."""

    name = "xml_header"
    stage = "code_filters"
    reasons = ("xml_header",)

    exempt_languages: tuple[str, ...] = ("HTML", "XML")

    def __call__(self, table: pa.Table) -> pa.Table:
        head = pc.utf8_slice_codeunits(pc.fill_null(table.column("content"), ""), 0, 200)
        xml = pc.starts_with(pc.utf8_ltrim_whitespace(head), "<?xml")
        exempt = pc.fill_null(pc.is_in(table.column("lang"),
                                       pa.array(list(self.exempt_languages), pa.string())),
                              False)
        return self.remove(table, pc.and_(xml, pc.invert(exempt)), "xml_header")
