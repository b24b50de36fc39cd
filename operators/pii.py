"""Secret and PII redaction: the file stays, each detected value becomes a placeholder.

Detectors, each a span finder over the whole text (``re`` runs over the file once per
pattern; Python touches only the candidates):

- vendor tokens (``aws_key``, ``github_token``, ``gitlab_token``, ``slack_token``,
  ``api_key``, JWTs as ``secret``): the formats providers document
  (:mod:`operators.secret_formats`), wherever they stand;
- ``password`` / ``secret``: values assigned to a secret-sounding name in the syntaxes of
  code, configuration, shell, Dockerfiles, XML and notebooks, passwords in connection
  strings and URLs (:mod:`operators.secret_assign`);
- ``private_key``: the body of PEM/OpenSSH/PGP private-key blocks, also with escaped
  newlines inside JSON strings;
- ``email``, ``ip_address``: own patterns, checked with a TLD list and :mod:`ipaddress`.

Placeholders keep the file valid: a quoted value keeps its quotes, an unquoted value in a
shell-like file (``.env``, ``.sh``, Dockerfile) becomes a quoted placeholder, and a private
key split over string literals keeps its quotes and escapes.

What is left alone so that code is not mangled: example and reserved domains
(``example.com``, ``*.test``, ``localhost``...) and ``git@``/``noreply`` addresses;
private, loopback, link-local, multicast, reserved and documentation IP ranges,
well-known public resolvers (8.8.8.8, 1.1.1.1...), dotted numbers that read as versions or
section numbers (all parts below 30, or after "version", "section", "§", "RFC"...);
placeholders, references, words and sequences assigned to secret names; all of a lockfile.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from operators import secret_assign as assign
from operators.base import RowOperator
from operators.kernels.lines import keyword_line_bounds, literal_tables
from operators.pii_addresses import email_spans, ip_spans
from operators.schema import FILE_SCHEMA, live_mask
from operators.secret_formats import BOUNDARY, PUBLIC_VALUES, RULE_LIST

PLACEHOLDERS = {
    "email": "<EMAIL>", "ip_address": "<IP_ADDRESS>", "password": "<PASSWORD>",
    "private_key": "<KEY>", "aws_key": "<KEY>", "github_token": "<KEY>",
    "gitlab_token": "<KEY>", "slack_token": "<KEY>", "api_key": "<KEY>", "secret": "<KEY>",
}
KINDS = tuple(PLACEHOLDERS)

REDACTIONS_TYPE = FILE_SCHEMA.field("redactions").type

_LOCKFILES = re.compile(r"(^|/)(package-lock\.json|yarn\.lock|pnpm-lock\.yaml|Cargo\.lock|"
                        r"poetry\.lock|Pipfile\.lock|go\.sum|composer\.lock|Gemfile\.lock)$")

_SECRET_LITERALS = assign.SECRET_LITERALS
_LITERALS = literal_tables(_SECRET_LITERALS)
_KEY_WORD = sorted(set(_SECRET_LITERALS)).index("key")
_QUALIFIERS = literal_tables(assign.KEY_QUALIFIERS)[:2]
#: RE2 prefilters (pyarrow compute, over a whole batch): a row can only hold a detector's
#: finding if it matches; the Python patterns then run on those rows alone
_PREFILTER = {
    "keyword": assign.ASSIGNMENT_PATTERN,
    "url_password": r"://[^\s:/@]*:[^\s@/]{3,}@",
    "email": r"[A-Za-z0-9]@[A-Za-z0-9-]+\.[A-Za-z]",
    "ipv4": r"\d\.\d{1,3}\.\d{1,3}\.\d",
    # every IPv6 match has three colons with a hex digit before the first, or is "::h:h"
    "ipv6": r"[0-9A-Fa-f]:[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:|::[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]",
    "private_key": r"PRIVATE KEY",
}


def _re2_group(pattern: str) -> str:
    """A pattern as one branch of an RE2 alternation (a leading ``(?i)`` scoped to it)."""
    if pattern.startswith("(?i)"):
        return f"(?i:{pattern[4:]})"
    return f"(?:{pattern})"


def _token_prefilter(rule) -> list[str]:
    """What a batch prefilter looks for of a vendor rule: its own prefilter if it has one,
    its anchors where each has 5+ characters (literals are cheap in RE2's DFA), else its
    pattern without lookarounds (RE2 has none) and with each counted repetition made "at
    least min(n, 8)" (``[a-f0-9]{64}`` becomes ``[a-f0-9]{8,}``: long counted repetitions
    blow up RE2's DFA); a bounded rule's pattern also wants no token character before it,
    as the rule does (so base64 blobs do not send whole data files to Python). Each may
    only match more than the rule."""
    if rule.prefilter:
        return [rule.prefilter]
    if rule.anchors and min(len(a) for a in rule.anchors) >= 5:
        return [re.escape(a) for a in rule.anchors]
    lead = r"(?:^|[^A-Za-z0-9_+/-])" if rule.bounded else ""
    return [lead + re.sub(r"\{(\d+)(?:,\d*)?\}", lambda m: "{%d,}" % min(int(m.group(1)), 8),
                          _re2(rule.regex.pattern))]


@dataclasses.dataclass
class Redactor(RowOperator):
    """Redacts secrets and PII in live rows' content; adds ``redactions`` (kind, count
    per row). Runs before token counting.

    Args:
        kinds: the detectors to run (default all of :data:`KINDS`).
        min_entropy: Shannon entropy (bits/char) above which a value of letters only
            assigned to a secret-sounding name is a secret (values with a digit need none).
        max_ips_per_file: a file with more distinct public addresses is address data (an
            allowlist, a URL parser's tests) and its addresses are left alone.
    """

    name = stage = "redaction"
    writes = ("content", "redactions")

    kinds: tuple[str, ...] = KINDS
    min_entropy: float = 4.0
    max_ips_per_file: int = 8

    def __post_init__(self):
        bad = sorted(set(self.kinds) - set(KINDS))
        if bad:
            raise ValueError(f"unknown redaction kind(s) {bad}; known: {list(KINDS)}")
        self.kinds = tuple(self.kinds)
        self._rules = [r for r in RULE_LIST if r.kind in self.kinds]
        # every anchor of the rules, looked up once per text (str.find runs at memchr speed)
        self._anchors = sorted({a for r in self._rules for a in r.anchors or ()})
        self._token_prefilters = sorted({p for r in self._rules for p in _token_prefilter(r)})
        patterns = [*_PREFILTER.items()] + [("tokens", p) for p in self._token_prefilters]
        # per case group: (family, one alternation of the family's patterns in the group)
        self._prefilter_groups = []
        for insensitive in (False, True):
            group = [(f, p) for f, p in patterns if p.startswith("(?i)") == insensitive]
            families = list(dict.fromkeys(f for f, _ in group))
            self._prefilter_groups.append([
                (f, "|".join(_re2_group(p) for g, p in group if g == f)) for f in families])

    # -- detectors: (start, end, kind) spans ------------------------------------------
    def prefilter(self, content: pa.Array, paths: pa.Array | None = None
                  ) -> dict[str, np.ndarray]:
        """Per detector family, which rows can hold a finding (RE2 over the batch).
        ``paths``: the rows' paths; in configuration files (:data:`secret_assign.
        CONFIG_PATH`) a secret word is enough for the keyword family, which elsewhere
        needs an assignment's shape (:data:`secret_assign.ASSIGNMENT_PATTERN`).

        One alternation of all the case-sensitive patterns, then one of the
        case-insensitive ones (together, all of them compile to a slow DFA), picks the rows
        any may match; on those rows, one alternation per family. A row matches an
        alternation exactly when it matches one of its patterns, so the masks are those of
        running every pattern on every row, in far fewer passes over the batch."""

        def match(rows: pa.Array, pattern: str) -> np.ndarray:
            return pc.fill_null(pc.match_substring_regex(rows, pattern),
                                False).to_numpy(zero_copy_only=False)

        out = {family: np.zeros(len(content), dtype=bool)
               for family in [*_PREFILTER, "tokens"]}
        for group in self._prefilter_groups:
            rows = match(content, "|".join(p for _, p in group)).nonzero()[0]
            if not len(rows):
                continue
            if len(group) == 1:
                out[group[0][0]][rows] = True
                continue
            some = content.take(pa.array(rows))
            for family, pattern in group:
                out[family][rows[match(some, pattern)]] = True
        if paths is not None and "keyword" in out:
            config = (match(paths, assign.CONFIG_PATH) & ~out["keyword"]).nonzero()[0]
            if len(config):
                worded = match(content.take(pa.array(config)), assign.WORD_PATTERN)
                out["keyword"][config[worded]] = True
        return out

    def spans(self, text: str, path: str = "", families: set[str] | None = None,
              keyword_lines: list[tuple[int, str]] | None = None
              ) -> list[tuple[int, int, str | None, str | None]]:
        """Findings in ``text`` as (start, end, kind, replacement): ``replacement`` None
        is the kind's placeholder; ``kind`` None marks a further piece of the finding
        before it (cleared, not counted). ``families`` limits the detectors to run (from
        :meth:`prefilter`), None runs them all."""
        if _LOCKFILES.search(path or ""):
            return []

        def want(family: str, *kinds: str) -> bool:
            return (families is None or family in families) and any(
                kind in self.kinds for kind in kinds)

        out: list = []
        if want("private_key", "private_key") and "PRIVATE KEY" in text:
            out += [(s, e, k, None if k else "") for s, e, k in assign.private_key_spans(text)]
        if families is None or "tokens" in families:
            present = {a for a in self._anchors if a in text}
            for rule in self._rules:
                if rule.anchors is not None and present.isdisjoint(rule.anchors):
                    continue
                g = 1 if rule.regex.groups else 0
                for m in rule.regex.finditer(text):
                    if rule.bounded and m.start() > 0 and BOUNDARY.match(text, m.start() - 1):
                        continue
                    if not (assign.placeholder_token(m.group(g))
                            or m.group(g) in PUBLIC_VALUES):
                        out.append((m.start(g), m.end(g), rule.kind, None))
        if want("url_password", "password"):
            out += [(s, e, k, None) for s, e, k in assign.url_password_spans(text)]
        if want("keyword", "password", "secret"):
            out += self._keyword_spans(text, path, keyword_lines)
        if want("email", "email") and "@" in text:
            out += [(s, e, k, None) for s, e, k in email_spans(text)]
        v4, v6 = want("ipv4", "ip_address"), want("ipv6", "ip_address")
        if v4 or v6:
            out += [(s, e, k, None) for s, e, k in ip_spans(
                text, v4, v6, self.max_ips_per_file)]
        out = _resolve([x for x in out if x[2] is None or x[2] in self.kinds])
        return _shell_quoted(text, out) if out and assign.shell_like(path) else out

    def _keyword_spans(self, text: str, path: str,
                       lines: list[tuple[int, str]] | None = None) -> list:
        """Values assigned to secret-sounding names on the lines of ``text`` that hold one
        of :data:`_SECRET_LITERALS` (any case). ``lines``: those lines as (character
        offset, line), found for a whole batch (:meth:`keyword_lines`); a superset is
        fine, each line is checked here."""
        if lines is None:
            lines = []
            for ls in self._word_line_starts(text):
                le = text.find("\n", ls)
                lines.append((ls, text[ls:len(text) if le < 0 else le]))
        config = assign.config_like(path)
        out = []
        for ls, line in lines:
            for a, b, kind in assign.assignment_spans(line, config, self.min_entropy):
                out.append((ls + a, ls + b, kind, None))
        if "</" in text:
            out += [(s, e, k, None) for s, e, k in assign.xml_element_spans(
                text, self.min_entropy)]
        return out

    @staticmethod
    def _word_line_starts(text: str) -> list[int]:
        """Start offsets of the lines that hold a secret word (str.find runs at memchr
        speed, re does not)."""
        lower = text.lower()
        starts = set()
        for word in _SECRET_LITERALS:
            pos = lower.find(word)
            while pos >= 0:
                starts.add(text.rfind("\n", 0, pos) + 1)
                nxt = text.find("\n", pos)
                pos = lower.find(word, nxt) if nxt >= 0 else -1
        return sorted(starts)

    @staticmethod
    def keyword_lines(content: pa.Array | pa.ChunkedArray, rows: np.ndarray,
                      texts: list[str]) -> dict[int, list[tuple[int, str]]]:
        """For ``rows`` of a batch (``texts``: their strings): the lines that hold an
        assignment character and either a secret word in ASCII case folding or a
        non-ASCII character (which ``str.lower`` might turn into one), with their
        character offsets; one compiled pass over the batch's buffer
        (:func:`operators.kernels.lines.keyword_line_bounds`)."""
        from operators.kernels.utf8 import content_buffers

        if not len(rows):
            return {}
        if isinstance(content, pa.ChunkedArray):
            content = content.combine_chunks()
        data, offsets = content_buffers(content)
        line_row, starts, ends = keyword_line_bounds(
            data, offsets, np.asarray(rows, dtype=np.int64), *_LITERALS, _KEY_WORD,
            *_QUALIFIERS)
        out: dict[int, list[tuple[int, str]]] = {}
        for k, a, b in zip(line_row.tolist(), starts.tolist(), ends.tolist()):
            out.setdefault(int(rows[k]), []).append((a, texts[k][a:b]))
        return out

    # -- applying ------------------------------------------------------------------------
    def redact(self, text: str, path: str = "", families: set[str] | None = None,
               keyword_lines: list[tuple[int, str]] | None = None
               ) -> tuple[str, dict[str, int]]:
        spans = self.spans(text, path, families, keyword_lines)
        if not spans:
            return text, {}
        parts, counts, pos = [], {}, 0
        for s, e, kind, rep in spans:
            parts.append(text[pos:s])
            parts.append(PLACEHOLDERS[kind] if rep is None else rep)
            if kind is not None:
                counts[kind] = counts.get(kind, 0) + 1
            pos = e
        parts.append(text[pos:])
        return "".join(parts), counts

    def __call__(self, table: pa.Table) -> pa.Table:
        live = live_mask(table).to_numpy(zero_copy_only=False)
        column = table.column("content")
        redactions: list = [None] * table.num_rows
        cand = self.prefilter(column, table.column("path"))
        fams = np.array(list(cand))
        hits = np.stack([cand[f] for f in fams], axis=1) if len(fams) else None
        rows = np.flatnonzero(live & hits.any(axis=1))
        # only the rows a detector may fire on become Python strings
        texts = column.take(pa.array(rows)).to_pylist()
        paths = table.column("path").take(pa.array(rows)).to_pylist()
        worded = cand["keyword"][rows]
        lines = self.keyword_lines(column, rows[worded],
                                   [t for t, w in zip(texts, worded) if w])
        changed, new = np.zeros(table.num_rows, dtype=bool), []
        for i, text, path in zip(rows.tolist(), texts, paths):
            text, counts = self.redact(text or "", path or "", set(fams[hits[i]].tolist()),
                                       lines.get(i, []))
            if counts:
                changed[i] = True
                new.append(text)
                redactions[i] = [{"kind": k, "count": c} for k, c in sorted(counts.items())]
        if changed.any():
            column = pc.replace_with_mask(column, pa.array(changed),
                                          pa.array(new, column.type))
            table = table.set_column(table.schema.get_field_index("content"), "content", column)
        return _with_redactions(table, redactions)


def _re2(pattern: str) -> str:
    """A Python pattern as a looser RE2 one: no lookarounds, repetition bounds <= 1000."""
    pattern = re.sub(r"\(\?<?[!=][^()]*\)", "", pattern)
    return re.sub(r"\{(\d+),\d{4,}\}", r"{\1,}", pattern)


def _resolve(spans: list) -> list:
    """Sorted, non-overlapping spans (the earlier, then the longer, wins)."""
    out: list = []
    for span in sorted(spans, key=lambda x: (x[0], -(x[1] - x[0]))):
        if span[1] <= span[0] or (out and span[0] < out[-1][1]):
            continue
        out.append(span)
    return out


def _shell_quoted(text: str, spans: list) -> list:
    """In a shell-like file, a placeholder outside quotes becomes a quoted one
    (``KEY='<KEY>'``): ``<KEY>`` bare would be an input redirection."""
    out = []
    for s, e, kind, rep in spans:
        if kind is not None and rep is None:
            line = text[text.rfind("\n", 0, s) + 1:s]
            if line.count('"') % 2 == 0 and line.count("'") % 2 == 0:
                rep = f"'{PLACEHOLDERS[kind]}'"
        out.append((s, e, kind, rep))
    return out


def _with_redactions(table: pa.Table, redactions: list) -> pa.Table:
    col = pa.array(redactions, REDACTIONS_TYPE)
    if "redactions" in table.column_names:
        return table.set_column(table.schema.get_field_index("redactions"), "redactions", col)
    return table.append_column("redactions", col)
