"""Personal addresses in code: e-mail addresses and public IP addresses, with the
exclusions that keep documentation, examples, version numbers and address tables."""

from __future__ import annotations

import ipaddress
import re

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


def email_spans(text: str) -> list[tuple[int, int, str]]:
    out = []
    for m in _EMAIL.finditer(text):
        local, domain, tld = m.group(1), m.group(2), m.group(3).lower()
        if tld not in _TLDS or _EXAMPLE_DOMAINS.search(domain.lower()):
            continue
        if _EMAIL_LOCAL_SKIP.match(local):
            continue
        out.append((m.start(), m.end(), "email"))
    return out


def ip_spans(text: str, v4: bool = True, v6: bool = True, max_distinct: int = 8
             ) -> list[tuple[int, int, str]]:
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
    if len({text[s:e].lower() for s, e, _ in out}) > max_distinct:
        return []  # an address table or a parser's test suite, not someone's host
    return out


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
