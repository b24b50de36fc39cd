"""Secret and PII redaction: the file stays, each detected value becomes a placeholder.

Detectors, each a span finder over the whole text (``re`` runs over the file once per
pattern; Python touches only the candidates):

- ``private_key``: PEM/OpenSSH/PGP private-key blocks (header names from detect-secrets'
  ``PrivateKeyDetector``); the body between the BEGIN and END lines is redacted.
- ``aws_key``, ``github_token``, ``gitlab_token``, ``slack_token``, ``api_key``: the token
  patterns of detect-secrets' regex plugins (AWS, GitHub, GitLab, Slack, Stripe, OpenAI,
  SendGrid, Twilio, npm, PyPI, Discord, Telegram, Mailchimp), plus GitHub fine-grained
  tokens (``github_pat_``), which it lacks.
- ``password`` / ``secret``: detect-secrets' ``KeywordDetector`` (its per-file-type
  assignment patterns: ``password = "..."``, ``api_key: '...'``) on the lines that
  mention a secret-sounding word; also high-entropy quoted strings assigned to such a
  name (``token``, ``key``, ``secret``, ``auth``...), entropy from detect-secrets.
- ``email``, ``ip_address``: own patterns (detect-secrets has none for e-mail), checked
  with a TLD list and :mod:`ipaddress`.

What is left alone so that code is not mangled: example and reserved domains
(``example.com``, ``*.test``, ``localhost``...) and ``git@``/``noreply`` addresses;
private, loopback, link-local, multicast, reserved and documentation IP ranges,
well-known public resolvers (8.8.8.8, 1.1.1.1...), dotted numbers that read as versions or
section numbers (all parts below 30, or after "version", "section", "§", "RFC"...);
templated, ``$``-prefixed, sequential and UUID-shaped values and pure hex digests (lockfile
hashes, git SHAs) for the keyword and entropy detectors; all of a lockfile.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from operators.schema import FILE_SCHEMA, live_mask

PLACEHOLDERS = {
    "email": "<EMAIL>", "ip_address": "<IP_ADDRESS>", "password": "<PASSWORD>",
    "private_key": "<KEY>", "aws_key": "<KEY>", "github_token": "<KEY>",
    "gitlab_token": "<KEY>", "slack_token": "<KEY>", "api_key": "<KEY>", "secret": "<KEY>",
}
KINDS = tuple(PLACEHOLDERS)

REDACTIONS_TYPE = FILE_SCHEMA.field("redactions").type

_LOCKFILES = re.compile(r"(^|/)(package-lock\.json|yarn\.lock|pnpm-lock\.yaml|Cargo\.lock|"
                        r"poetry\.lock|Pipfile\.lock|go\.sum|composer\.lock|Gemfile\.lock)$")

_TLDS = set("""com org net edu gov mil int io co ai app dev info biz me us uk de fr it es nl
be ch at se no dk fi pl cz ru ua cn jp kr in au ca br mx ar cl za nz ie pt gr tr il ir sg hk
tw my id th vn ph eu asia xyz tech online site cloud email tv fm cc ly gg sh to ws ro hu bg sk
si hr rs lt lv ee is lu""".split())
_EXAMPLE_DOMAINS = re.compile(
    r"(^|\.)(example\.(com|org|net|edu)|[^.]*\.example|[^.]*\.test|[^.]*\.invalid|"
    r"[^.]*\.localhost|localhost|domain\.(com|tld)|email\.com|yourdomain\.com|"
    r"company\.com|users\.noreply\.github\.com)$", re.I)
_EMAIL = re.compile(r"(?<![\w.+:/-])([A-Za-z0-9][A-Za-z0-9._%+-]{0,63})@"
                    r"((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+([A-Za-z]{2,12}))"
                    r"(?![\w-])")
_EMAIL_LOCAL_SKIP = re.compile(r"^(no-?reply|git|user|username|name|email|someone|foo|bar|"
                               r"test|me|you)$", re.I)

#: addresses, each with the characters that may not precede it. The "not preceded by" test
#: runs after a match (see _unpreceded) instead of as a leading lookbehind, so that the
#: regex engine can skip ahead to the characters that can start an address; the IPv6
#: pattern's first group is spelt ``hex{1,4}:|:`` for the same reason (it is ``hex{0,4}:``)
_IPV4 = (re.compile(r"(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})(?![\w]|\.\d)"), re.compile(r"[\w.]"))
_IPV6 = (re.compile(r"((?:[0-9A-Fa-f]{1,4}:|:)(?:[0-9A-Fa-f]{0,4}:){2,6}[0-9A-Fa-f]{1,4})"
                    r"(?![\w:])"), re.compile(r"[\w:.]"))
_VERSION_CONTEXT = re.compile(
    r"(version|\bver|release|\bv|section|§|rfc|step|chapter|algorithm|==|>=|<=|~=|@)"
    r"[\w\s:=\"'#-]{0,6}$", re.I)
_WELL_KNOWN_IPS = {"8.8.8.8", "8.8.4.4", "1.1.1.1", "1.0.0.1", "9.9.9.9", "149.112.112.112",
                   "208.67.222.222", "208.67.220.220"}
_DOC_NETS = [ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24",
                                                "203.0.113.0/24", "2001:db8::/32")]

_PRIVATE_KEY = re.compile(
    r"(-----BEGIN ((?:RSA |DSA |EC |OPENSSH |ENCRYPTED |SSH2 ENCRYPTED )?PRIVATE KEY"
    r"(?: BLOCK)?|PGP PRIVATE KEY BLOCK)-----[^\n]*\n)([\s\S]*?)(\n?[ \t\"']*-----END \2-----)")
_SECRET_WORDS = re.compile(r"pass(?:w|phrase)|pwd|secret|token|api_?key|apikey|auth|"
                           r"credential|private_?key|access_?key|client_?key|contrase", re.I)
#: lowercase literals that cover every match of _SECRET_WORDS
_SECRET_LITERALS = ("passw", "passphrase", "pwd", "secret", "token", "api_key", "apikey",
                    "apikey", "auth", "credential", "private_key", "privatekey", "access_key",
                    "accesskey", "client_key", "clientkey", "contrase")


def _literal_tables(words) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Words (sorted, distinct) for :func:`_keyword_line_bounds`: their bytes end to end,
    where each ends, and per byte the range [lo, hi) of words starting with it (either
    case)."""
    words = sorted(set(words))
    data = np.frombuffer("".join(words).encode(), dtype=np.uint8)
    ends = np.cumsum([len(w) for w in words]).astype(np.int64)
    first = np.zeros((256, 2), dtype=np.int64)
    for k, w in enumerate(words):
        for b in {ord(w[0]), ord(w[0].upper())}:
            if first[b, 1] == 0:
                first[b, 0] = k
            first[b, 1] = k + 1
    return data, ends, first


_LITERALS = _literal_tables(_SECRET_LITERALS)
#: RE2 prefilters (pyarrow compute, over a whole batch): a row can only hold a detector's
#: finding if it matches; the Python patterns then run on those rows alone
_PREFILTER = {
    "keyword": r"(?i)(pass(w|phrase)|pwd|secret|token|api_?key|apikey|auth|credential|"
               r"private_?key|access_?key|client_?key|contrase)[^\n]{0,80}[\"']",
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


_ASSIGNED_STRING = re.compile(
    r"([A-Za-z_][\w.-]*)[\"']?\s*(?:=|:|:=|=>|\()\s*[rbuf]?[\"']([A-Za-z0-9+/=_\-.~]{16,})"
    r"[\"']")
#: what every _ASSIGNED_STRING match contains (a fast scan from the quote characters)
_LONG_QUOTED = re.compile(r"[\"'][A-Za-z0-9+/=_\-.~]{16,}[\"']")
_HEX = re.compile(r"^(?:sha\d*-)?[0-9a-fA-F]+$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)


def _token_patterns() -> list[tuple[str, re.Pattern]]:
    from detect_secrets.plugins import (aws, discord, github_token, gitlab_token, mailchimp,
                                        npm, openai, pypi_token, sendgrid, slack, stripe,
                                        telegram_token, twilio)

    out = [("aws_key", aws.AWSKeyDetector.denylist[0])]
    out += [("github_token", r) for r in github_token.GitHubTokenDetector.denylist]
    out.append(("github_token", re.compile(r"github_pat_[A-Za-z0-9_]{82}")))
    out += [("gitlab_token", r) for r in gitlab_token.GitLabTokenDetector.denylist]
    out += [("slack_token", r) for r in slack.SlackDetector.denylist]
    for plugin in (stripe.StripeDetector, openai.OpenAIDetector, sendgrid.SendGridDetector,
                   twilio.TwilioKeyDetector, npm.NpmDetector, pypi_token.PypiTokenDetector,
                   discord.DiscordBotTokenDetector, telegram_token.TelegramBotTokenDetector,
                   mailchimp.MailchimpDetector):
        out += [("api_key", r) for r in plugin.denylist]
    return out


def _aws_secret_pattern() -> re.Pattern:
    from detect_secrets.plugins import aws

    return aws.AWSKeyDetector.denylist[1]


class _Secrets:
    """detect-secrets' keyword detector, entropy and heuristic filters, loaded once."""

    def __init__(self):
        from detect_secrets.filters import heuristic
        from detect_secrets.plugins.high_entropy_strings import Base64HighEntropyString
        from detect_secrets.plugins import keyword
        from detect_secrets.plugins.keyword import (QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP,
                                                    REGEX_BY_FILETYPE, KeywordDetector)
        from detect_secrets.util.filetype import determine_file_type

        self.keyword = KeywordDetector()
        # every one of its patterns starts from one of these words (two of them case-
        # sensitively, the rest not): a line without any cannot yield a value
        self.words = re.compile("|".join(f"(?:{w})" for w in keyword.DENYLIST), re.I)
        self.by_type = REGEX_BY_FILETYPE
        self.default = QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP
        self.file_type = determine_file_type
        self.entropy = Base64HighEntropyString().calculate_shannon_entropy
        self.h = heuristic

    def keyword_values(self, line: str, path: str) -> list[str]:
        regexes = self.by_type.get(self.file_type(path or "x.py"), self.default)
        return [v for v in self.keyword.analyze_string(line, regexes) if v]

    def plausible(self, value: str, line: str) -> bool:
        """Not a template, reference, sequence, UUID, digest or placeholder word."""
        v = value.strip("\"'")
        if len(v) < 6 or _HEX.match(v) or _UUID.match(v):
            return False
        if (self.h.is_templated_secret(v) or self.h.is_prefixed_with_dollar_sign(v)
                or self.h.is_sequential_string(v) or self.h.is_indirect_reference(line)):
            return False
        if re.fullmatch(r"[a-z _-]+", v) or re.fullmatch(r"[A-Z_]+", v):
            return False  # words, not a secret: "development key", "secret_key"
        if re.fullmatch(r"[\w.-]+\.(key|pem|crt|cer|p12|txt|json|ya?ml|cfg|ini|conf|env)", v):
            return False  # a file name
        return not re.fullmatch(r"(x+|\*+|\.+|<[^>]*>|\{[^}]*\}|%\(?\w*\)?s)", v, re.I)


@dataclasses.dataclass
class Redactor:
    """Redacts secrets and PII in live rows' content; adds ``redactions`` (kind, count
    per row). Runs before token counting.

    Args:
        kinds: the detectors to run (default all of :data:`KINDS`).
        min_entropy: Shannon entropy (bits/char) above which a quoted string assigned to
            a secret-sounding name is a secret (detect-secrets' base64 default is 4.5).
        max_ips_per_file: a file with more distinct public addresses is address data (an
            allowlist, a URL parser's tests) and its addresses are left alone.
    """

    kinds: tuple[str, ...] = KINDS
    min_entropy: float = 4.0
    max_ips_per_file: int = 8

    def __post_init__(self):
        bad = sorted(set(self.kinds) - set(KINDS))
        if bad:
            raise ValueError(f"unknown redaction kind(s) {bad}; known: {list(KINDS)}")
        self.kinds = tuple(self.kinds)
        self._tokens = [(k, r) for k, r in _token_patterns() if k in self.kinds]
        self._aws_secret = _aws_secret_pattern()
        self._secrets = None
        # RE2 has no lookarounds: drop them, the prefilter may only match more
        # one RE2 pass per pattern: an alternation of all of them compiles to a slow DFA
        self._token_prefilters = [("(?i)" if rx.flags & re.I else "") + _re2(rx.pattern)
                                  for rx in [r for _, r in self._tokens] + [self._aws_secret]]
        patterns = [*_PREFILTER.items()] + [("tokens", p) for p in self._token_prefilters]
        # per case group: (family, one alternation of the family's patterns in the group)
        self._prefilter_groups = []
        for insensitive in (False, True):
            group = [(f, p) for f, p in patterns if p.startswith("(?i)") == insensitive]
            families = list(dict.fromkeys(f for f, _ in group))
            self._prefilter_groups.append([
                (f, "|".join(_re2_group(p) for g, p in group if g == f)) for f in families])

    # -- detectors: (start, end, kind) spans ------------------------------------------
    def prefilter(self, content: pa.Array) -> dict[str, np.ndarray]:
        """Per detector family, which rows can hold a finding (RE2 over the batch).

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
        return out

    def spans(self, text: str, path: str = "", families: set[str] | None = None,
              keyword_lines: list[tuple[int, str]] | None = None
              ) -> list[tuple[int, int, str]]:
        """Findings in ``text``; ``families`` limits the detectors to run (from
        :meth:`prefilter`), None runs them all."""
        if _LOCKFILES.search(path or ""):
            return []
        if self._secrets is None:
            self._secrets = _Secrets()

        def want(family: str, *kinds: str) -> bool:
            return (families is None or family in families) and any(
                kind in self.kinds for kind in kinds)

        out: list[tuple[int, int, str]] = []
        if want("private_key", "private_key") and "PRIVATE KEY" in text:
            out += [(m.start(3), m.end(3), "private_key") for m in _PRIVATE_KEY.finditer(text)
                    if m.group(3).strip()]
        if families is None or "tokens" in families:
            for kind, rx in self._tokens:
                for m in rx.finditer(text):
                    if not _embedded(text, m.start(), m.end()):
                        out.append((m.start(), m.end(), kind))
            if "aws_key" in self.kinds:
                for m in self._aws_secret.finditer(text):
                    out.append((m.start(1), m.end(1), "aws_key"))
        if want("keyword", "password", "secret"):
            out += self._keyword_spans(text, path, keyword_lines)
        if want("email", "email") and "@" in text:
            out += self._emails(text)
        v4, v6 = want("ipv4", "ip_address"), want("ipv6", "ip_address")
        if v4 or v6:
            out += self._ips(text, v4, v6)
        return _resolve(out)

    def _keyword_spans(self, text: str, path: str,
                       lines: list[tuple[int, str]] | None = None
                       ) -> list[tuple[int, int, str]]:
        """Secrets assigned to secret-sounding names, on the lines of ``text`` that hold one
        of :data:`_SECRET_LITERALS` (any case) and a quote. ``lines``: those lines as
        (character offset, line), found for a whole batch (:meth:`keyword_lines`); a
        superset is fine, each line is checked here."""
        out = []
        if lines is None:
            lines = []
            for ls in self._word_line_starts(text):
                le = text.find("\n", ls)
                lines.append((ls, text[ls:len(text) if le < 0 else le]))
        for ls, line in lines:
            if '"' not in line and "'" not in line:
                continue
            lower = line.lower()
            if not any(w in lower for w in _SECRET_LITERALS):
                continue
            found = []
            # detect-secrets' patterns all need one of its words, ours a long quoted value:
            # checking for those first skips most lines without changing any result
            if self._secrets.words.search(line):
                for value in self._secrets.keyword_values(line, path):
                    if self._secrets.plausible(value, line):
                        found.append(value)
            for a in (_ASSIGNED_STRING.finditer(line) if _LONG_QUOTED.search(line) else ()):
                name, value = a.group(1), a.group(2)
                if (_SECRET_WORDS.search(name) and value not in found
                        and self._secrets.plausible(value, line)
                        and self._secrets.entropy(value) >= self.min_entropy):
                    found.append(value)
            for value in found:
                pos = line.find(value)
                if pos < 0:
                    continue
                kw = _SECRET_WORDS.search(line[:pos] or line)
                word = kw.group(0).lower() if kw else ""
                kind = "password" if word.startswith(("pass", "pwd", "contrase")) else "secret"
                if kind in self.kinds:
                    out.append((ls + pos, ls + pos + len(value), kind))
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
        """For ``rows`` of a batch (``texts``: their strings): the lines that hold a quote
        and either a secret word in ASCII case folding or a non-ASCII character (which
        ``str.lower`` might turn into one), with their character offsets; one compiled
        pass over the batch's buffer (:func:`_keyword_line_bounds`)."""
        from operators.minhash import content_buffers

        if not len(rows):
            return {}
        if isinstance(content, pa.ChunkedArray):
            content = content.combine_chunks()
        data, offsets = content_buffers(content)
        line_row, starts, ends = _keyword_line_bounds(
            data, offsets, np.asarray(rows, dtype=np.int64), *_LITERALS)
        out: dict[int, list[tuple[int, str]]] = {}
        for k, a, b in zip(line_row.tolist(), starts.tolist(), ends.tolist()):
            out.setdefault(int(rows[k]), []).append((a, texts[k][a:b]))
        return out

    @staticmethod
    def _emails(text: str) -> list[tuple[int, int, str]]:
        out = []
        for m in _EMAIL.finditer(text):
            local, domain, tld = m.group(1), m.group(2), m.group(3).lower()
            if tld not in _TLDS or _EXAMPLE_DOMAINS.search(domain.lower()):
                continue
            if _EMAIL_LOCAL_SKIP.match(local):
                continue
            out.append((m.start(), m.end(), "email"))
        return out

    def _ips(self, text: str, v4: bool = True, v6: bool = True) -> list[tuple[int, int, str]]:
        out = []
        for rx, not_after in [p for p, on in ((_IPV4, v4), (_IPV6, v6)) if on]:
            for m in _unpreceded(rx, not_after, text):
                value = m.group(1)
                try:
                    ip = ipaddress.ip_address(value)
                except ValueError:
                    continue
                if ip.version == 6 and (ip.ipv4_mapped or max(
                        len(g) for g in value.split(":")) < 3):
                    continue  # ::ffff:a.b.c.d, or 1:2::3:4-style examples
                if (not ip.is_global or ip.is_multicast or value in _WELL_KNOWN_IPS
                        or any(ip in n for n in _DOC_NETS if n.version == ip.version)):
                    continue
                if re.match(r"/\d|-[0-9A-Za-z]", text[m.end(1):m.end(1) + 2]):
                    continue  # a network (CIDR) or a version with a suffix, not a host
                if ip.version == 4 and (
                        max(int(x) for x in value.split(".")) < 30  # 4.3.2.1 numbering
                        or _VERSION_CONTEXT.search(text[max(0, m.start() - 24):m.start()])):
                    continue
                out.append((m.start(1), m.end(1), "ip_address"))
        if len({text[s:e].lower() for s, e, _ in out}) > self.max_ips_per_file:
            return []  # an address table or a parser's test suite, not someone's host
        return out

    # -- applying ------------------------------------------------------------------------
    def redact(self, text: str, path: str = "", families: set[str] | None = None,
               keyword_lines: list[tuple[int, str]] | None = None
               ) -> tuple[str, dict[str, int]]:
        spans = self.spans(text, path, families, keyword_lines)
        if not spans:
            return text, {}
        parts, counts, pos = [], {}, 0
        for s, e, kind in spans:
            parts.append(text[pos:s])
            parts.append(PLACEHOLDERS[kind])
            counts[kind] = counts.get(kind, 0) + 1
            pos = e
        parts.append(text[pos:])
        return "".join(parts), counts

    def __call__(self, table: pa.Table) -> pa.Table:
        live = live_mask(table).to_numpy(zero_copy_only=False)
        column = table.column("content")
        redactions: list = [None] * table.num_rows
        cand = self.prefilter(column)
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


@numba.njit(cache=True)
def _keyword_line_bounds(data, offsets, rows, lits, lit_ends, first):
    """Per row of ``rows``: the lines (character start and end, without the newline) that
    hold a quote and either one of the words of :func:`_literal_tables` in any ASCII case
    or a non-ASCII character."""
    n = 0
    cap = 1024
    line_row = np.zeros(cap, dtype=np.int64)
    starts = np.zeros(cap, dtype=np.int64)
    ends = np.zeros(cap, dtype=np.int64)
    for r in range(rows.shape[0]):
        a, end = offsets[rows[r]], offsets[rows[r] + 1]
        i, chars = a, 0
        while i < end:  # one line from i
            line_chars = chars
            quote, word = False, False
            while i < end and data[i] != 10:
                c = data[i]
                if c == 34 or c == 39:
                    quote = True
                elif c >= 0x80:
                    word = True
                elif not word and first[c, 1] > 0:
                    for w in range(first[c, 0], first[c, 1]):
                        lo = lit_ends[w - 1] if w > 0 else 0
                        if i + lit_ends[w] - lo > end:
                            continue
                        same = True
                        for k in range(1, lit_ends[w] - lo):
                            b = data[i + k]
                            if (b + 32 if 65 <= b <= 90 else b) != lits[lo + k]:
                                same = False
                                break
                        if same:
                            word = True
                            break
                if c & 0xC0 != 0x80:
                    chars += 1
                i += 1
            if quote and word:
                if n == cap:
                    cap *= 2
                    line_row = np.concatenate((line_row, np.zeros(cap - n, np.int64)))
                    starts = np.concatenate((starts, np.zeros(cap - n, np.int64)))
                    ends = np.concatenate((ends, np.zeros(cap - n, np.int64)))
                line_row[n], starts[n], ends[n] = r, line_chars, chars
                n += 1
            if i < end:  # the newline
                i += 1
                chars += 1
    return line_row[:n], starts[:n], ends[:n]


def _re2(pattern: str) -> str:
    """A Python pattern as a looser RE2 one: no lookarounds, repetition bounds <= 1000."""
    pattern = re.sub(r"\(\?<?[!=][^()]*\)", "", pattern)
    return re.sub(r"\{(\d+),\d{4,}\}", r"{\1,}", pattern)


def _unpreceded(rx: re.Pattern, not_after: re.Pattern, text: str):
    """The matches of ``rx`` whose first character does not follow one ``not_after`` matches:
    the matches of ``(?<!not_after)rx``, found without a leading lookbehind."""
    pos = 0
    while (m := rx.search(text, pos)) is not None:
        start = m.start()
        if start > 0 and not_after.match(text, start - 1):
            pos = start + 1
            continue
        yield m
        pos = m.end() if m.end() > start else start + 1


def _embedded(text: str, start: int, end: int) -> bool:
    """A token match inside a longer run of base64 characters (a data blob), not a key."""
    before = text[start - 1] if start > 0 else " "
    after = text[end] if end < len(text) else " "
    return bool(re.match(r"[A-Za-z0-9+/]", before) or re.match(r"[A-Za-z0-9+/]", after))


def _resolve(spans: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Sorted, non-overlapping spans (the earlier, then the longer, wins)."""
    out: list[tuple[int, int, str]] = []
    for s, e, kind in sorted(spans, key=lambda x: (x[0], -(x[1] - x[0]))):
        if e <= s:
            continue
        if out and s < out[-1][1]:
            continue
        out.append((s, e, kind))
    return out


def _with_redactions(table: pa.Table, redactions: list) -> pa.Table:
    col = pa.array(redactions, REDACTIONS_TYPE)
    if "redactions" in table.column_names:
        return table.set_column(table.schema.get_field_index("redactions"), "redactions", col)
    return table.append_column("redactions", col)
