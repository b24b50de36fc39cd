"""The fast forms of phase-1 hot paths give exactly the answers of their plain forms.

Each rewrite (token counting without encoding, regexes that start with a character,
possessive string runs, lookbehinds moved after the match, early exits) is compared with
the plain form on real source files (the Python standard library: code, docstrings,
non-ASCII text) and on generated text made of the characters each rewrite is about.
"""

from __future__ import annotations

import glob
import json
import os
import random
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from tokenizers import Tokenizer

from operators import pii, pii_addresses
from operators.filters import comment_ratio, data_heavy
from operators.kernels.tokens import PieceTable, char_classes
from operators.tokens import ByteLevelCounter, count_tokens, load_tokenizer

TOK = "packaged:smollm2"


@pytest.fixture(scope="module")
def real_texts() -> list[str]:
    files = sorted(glob.glob(os.path.join(os.path.dirname(os.__file__), "**", "*.py"),
                             recursive=True))
    texts = []
    for f in random.Random(0).sample(files, 600):
        with open(f, encoding="utf-8", errors="replace") as fh:
            texts.append(fh.read())
    assert sum(not t.isascii() for t in texts) >= 10  # the Unicode path is exercised
    return texts


def _fuzz(alphabet: list[str], n: int, size: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, size)))
            for _ in range(n)]


# -- token counting ------------------------------------------------------------------------
_TOKEN_ALPHABET = list("abcXYZ019 _'\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u2028\u3000"
                       "\u2003éß中Ⅻ²٣\u0301😀\ufeff<|>.,;(){}\"-+") + [
    "'s", "'ll", "'VE", "  ", "\n\n", "123456", "<|im_start|>", "<file_sep>"]


def _encode_counts(tok, texts):
    return [len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False)]


def test_byte_level_counts_equal_the_tokenizer(real_texts):
    tok = load_tokenizer(TOK)
    counter = ByteLevelCounter.from_tokenizer(tok)
    assert counter is not None and not counter.digits
    fuzz = _fuzz(_TOKEN_ALPHABET, 4000, 60, 1)
    texts = real_texts + fuzz
    got = [counter.count(t) for t in texts]
    ref = _encode_counts(tok, texts)
    fast = [(g, r) for g, r in zip(got, ref) if g is not None]
    assert all(g == r for g, r in fast)
    # only texts holding an added token go to the tokenizer itself
    added = [a["content"] for a in json.loads(tok.to_str())["added_tokens"]]
    assert all((g is None) == any(a in t for a in added) for g, t in zip(got, texts))
    assert len(fast) > len(real_texts) + 1000
    # the compiled pass over the whole array: every text without an added token
    arr = counter.count_array(pa.array(texts))
    assert all(a == r for a, r in zip(arr.tolist(), ref) if a >= 0)
    assert all((a < 0) == (g is None) for a, g in zip(arr, got))
    assert count_tokens(texts, TOK) == ref  # the public function, fallbacks included


def test_individual_digits_variant_equals_the_tokenizer(real_texts):
    """StarCoder's layout (digits split one by one before the byte-level regex), built on
    the same BPE model."""
    d = json.loads(load_tokenizer(TOK).to_str())
    d["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True}, d["pre_tokenizer"]]}
    tok = Tokenizer.from_str(json.dumps(d))
    counter = ByteLevelCounter.from_tokenizer(tok)
    assert counter is not None and counter.digits
    ascii_parts = [c for c in _TOKEN_ALPHABET if c.isascii() and not c.startswith("<")]
    parts = [c for c in _TOKEN_ALPHABET if not c.startswith("<")]  # Unicode numbers too
    texts = real_texts[:200] + _fuzz(ascii_parts, 2000, 60, 2) + _fuzz(parts, 2000, 60, 3)
    got = [counter.count(t) for t in texts]
    ref = _encode_counts(tok, texts)
    assert all(g == r for g, r in zip(got, ref) if g is not None)
    assert sum(g is not None for g in got) > 1000
    arr = counter.count_array(pa.array(texts)).tolist()
    # the compiled pass covers non-ASCII text too; what it leaves holds an added token
    assert all(a == r for a, r in zip(arr, ref) if a >= 0)
    assert all("<" in t for a, t in zip(arr, texts) if a < 0)
    assert sum(a >= 0 and not t.isascii() for a, t in zip(arr, texts)) > 1000


def test_unsupported_tokenizers_are_encoded():
    d = json.loads(load_tokenizer(TOK).to_str())
    d["normalizer"] = {"type": "NFC"}
    assert ByteLevelCounter.from_tokenizer(Tokenizer.from_str(json.dumps(d))) is None
    assert ByteLevelCounter.from_tokenizer(load_tokenizer("packaged:minilm")) is None
    assert count_tokens(["hello world"], "packaged:minilm") == [2]
    # a null counts 0 on every path
    assert count_tokens(["hello world", None], "packaged:minilm") == [2, 0]
    assert count_tokens(["a b", None, "x<|im_start|>y"], TOK) == [2, 0, 3]


def test_counter_cache_is_bounded():
    counter = ByteLevelCounter.from_tokenizer(load_tokenizer(TOK))
    counter.max_cache = 50
    text = " ".join(f"name{i}x" for i in range(300))
    assert counter.count(text) == _encode_counts(load_tokenizer(TOK), [text])[0]
    assert counter.count("a b c") == 3 and len(counter.cache) <= 300


def test_piece_table_bounds_and_overflowing_miss_lists():
    """A table far too small for the text (cleared over and over) and a miss list of four
    rows (documents resumed, the list grown) still give the tokenizer's counts."""
    tok = load_tokenizer(TOK)
    counter = ByteLevelCounter.from_tokenizer(tok)
    texts = [" ".join(f"name{i}x{j}" for i in range(200)) for j in range(5)] + [
        "a b", "", "  \n\t x'll 've 'S  ", "\u3000 é\u3000\u3000x 中文²  \x85"]
    ref = _encode_counts(tok, texts)
    data = pa.array(texts, pa.large_string())
    bufs = data.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int64)
    content = np.frombuffer(bufs[2], dtype=np.uint8)
    table = PieceTable(slots=16, arena_bytes=64)
    got = table.count(content, offsets, np.ones(len(texts), dtype=bool), False,
                      counter._length_of_bytes, miss_rows=4)
    assert got.tolist() == ref
    assert len(table) <= 8 and table.used[1] <= 64
    # pieces whose hashes collide still get their own lengths
    starts, ends = np.array([0, 5, 0]), np.array([4, 10, 4])  # "name", " name"[...], "name"
    lengths = PieceTable()._lengths(content, starts, ends, np.zeros(3, dtype=np.int64),
                                    counter._length_of_bytes)
    assert lengths.tolist() == [counter._length_of_bytes(content[a:b].tobytes())
                                for a, b in zip(starts, ends)]
    # the compiled classes are the ASCII path's regex classes on ASCII...
    classes = char_classes()
    for b in range(128):
        c = chr(b)
        want = 1 if c.isalpha() else 2 if c.isdigit() else 3 if re.match(r"\s", c, re.ASCII) \
            else 0
        assert classes[b] == want, repr(c)
    # ...and Unicode's beyond (\x1c-\x1f are not whitespace to the tokenizer, \x85 is)
    assert [classes[ord(c)] for c in "\x85\xa0\u3000é中²٣\u0301😀\x1c"] == \
        [3, 3, 3, 1, 1, 2, 2, 0, 0, 0]


# -- code filters ----------------------------------------------------------------------------
_STR = r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\''
_BLOCK = r"/\*.*?\*/"
_PLAIN_COMMENT_RE = {
    "hash": re.compile(rf"(?P<c>#[^\n]*)|{_STR}"),
    "python": re.compile(r'(?P<c>#[^\n]*|"""[\s\S]*?"""|\'\'\'[\s\S]*?\'\'\')|' + _STR),
    "c": re.compile(rf"(?P<c>//[^\n]*|{_BLOCK})|{_STR}|`[^`]*`", re.S),
    "php": re.compile(rf"(?P<c>//[^\n]*|#(?!\[)[^\n]*|{_BLOCK})|{_STR}", re.S),
    "sql": re.compile(rf"(?P<c>--[^\n]*|{_BLOCK})|{_STR}", re.S),
    "css": re.compile(rf"(?P<c>{_BLOCK})|{_STR}", re.S),
    "html": re.compile(r"(?P<c><!--.*?-->)", re.S),
}
_PLAIN_DATA_TOKEN = re.compile(
    r'"(?:[^"\\\n]|\\.){0,200}"|\'(?:[^\'\\\n]|\\.){0,200}\'|\b0[xX][0-9a-fA-F]+\b|'
    r'[-+]?\b\d+(?:\.\d+)?(?:[eE][-+]?\d+)?\b|[\[\]{},:;]')


def _plain_comment_fraction(text, lang):
    family = comment_ratio.COMMENT_SYNTAX.get(lang)
    if family is None or not text:
        return None
    return sum(len(m.group("c")) for m in _PLAIN_COMMENT_RE[family].finditer(text)
               if m.group("c")) / len(text)


def test_comment_fraction_and_line_count_equal_the_plain_forms(real_texts):
    fuzz = _fuzz(["#", "//", "/*", "*/", '"', "'", '"""', "'''", "\\", "\n", " ", "x", "--",
                  "<!--", "-->", "`", "#[", "\t", "\xa0", "\x1c", "\r"], 6000, 40, 3)
    fuzz += _fuzz(["#", "//", "/*", "*/", '"', "'", '"""', "'''", "\\", "\n", "x", "--",
                   "<!--", "-->", "`", "#[", "\xe9", "\u4e2d", "\\\n", "/", "*", "<", "!",
                   "\u2028", "\x85"], 4000, 80, 8)
    langs = sorted(set(comment_ratio.COMMENT_SYNTAX))
    rng = random.Random(4)
    texts = real_texts + fuzz
    chosen = ["Python" if text in real_texts[:1] else rng.choice(langs) for text in texts]
    compiled, lines = comment_ratio.comment_fractions(pa.array(texts, pa.large_string()),
                                                       np.arange(len(texts)), chosen, 3)
    for text, lang, fast, n in zip(texts, chosen, compiled.tolist(), lines.tolist()):
        plain = _plain_comment_fraction(text, lang)
        blank = sum(1 for x in text.split("\n") if x.strip())
        assert n == min(blank, 3)
        if n == 3:  # the compiled pass measures the texts with enough lines
            assert fast == plain, (lang, text[:200])


def test_data_fraction_equals_the_plain_form(real_texts):
    rng = random.Random(5)
    parts = ['"abc"', "'x\\'y'", "0x1F", "-3.5e+7", "12", ",", "[", "]", "{", ":", ";", " ",
             "\n", "foo", "a0x1", "\\", '"', "'", "+4", "1e5x"]
    fuzz = ["".join(rng.choice(parts) for _ in range(rng.randint(0, 3000))) for _ in range(300)]
    # Unicode digits and letters, combining marks, strings at the 200-unit bound
    parts += ["\u0663", "\xe9", "\u0301", "\xb2", "_", ".", "e", "E", "x", "0", "\r", "\t",
              "\\\n", "\u4e2d", "\U0001f600", '"' + "a" * 199 + '"', '"' + "a" * 200 + '"',
              "'" + "b" * 201 + "'"]
    fuzz += ["".join(rng.choice(parts) for _ in range(rng.randint(0, 300))) for _ in range(2000)]
    texts = real_texts + fuzz
    compiled = data_heavy.data_fractions(pa.array(texts, pa.large_string()),
                                         np.arange(len(texts)))
    hits = 0
    for text, fast in zip(texts, compiled.tolist()):
        non_ws = max(len(text) - sum(text.count(c) for c in " \t\n\r"), 1)
        plain = sum(map(len, _PLAIN_DATA_TOKEN.findall(text))) / non_ws
        assert fast == plain, text[:200]
        hits += plain > 0.7
    assert hits > 10


# -- redaction -------------------------------------------------------------------------------
_PLAIN_IPV4 = re.compile(r"(?<![\w.])((?:\d{1,3}\.){3}\d{1,3})(?![\w]|\.\d)")
_PLAIN_IPV6 = re.compile(r"(?<![\w:.])((?:[0-9A-Fa-f]{0,4}:){3,7}[0-9A-Fa-f]{1,4})(?![\w:])")


def _is_ip(value: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False


def test_ip_patterns_and_prefilters_match_the_plain_forms(real_texts):
    parts = ["1", "12", "255", "8", "203", ".", ".", ":", ":", "::", "ab", "fe80", "2a00", "x",
             " ", "_", "-", "/", "\n", "1.2.3.4", "93.184.216.34", "2a00:1450:4001:81c::200e",
             "::abc:1", "::"]
    texts = real_texts + _fuzz(parts, 20000, 30, 6)
    p4, p6 = (re.compile(pii._PREFILTER[k]) for k in ("ipv4", "ipv6"))
    found = 0
    for text in texts:
        for (rx, not_after), plain, pre in ((pii_addresses._IPV4, _PLAIN_IPV4, p4),
                                            (pii_addresses._IPV6, _PLAIN_IPV6, p6)):
            want = [m.span(1) for m in plain.finditer(text)]
            assert [m.span(1) for m in pii_addresses._unpreceded(rx, not_after, text)] == want
            if any(_is_ip(text[a:b]) for a, b in want):
                found += 1  # the family's batch prefilter never misses a possible address
                assert pre.search(text)
    assert found > 1000


def _planted_suite(real_texts: list[str], n: int, seed: int) -> tuple[list[str], list[str]]:
    """(texts, paths): the credential suite's cases and negatives, each inside a real
    file, then real files alone (under a code path and under a configuration path)."""
    from benchmarks.secret_suite import negatives, positives

    rng = random.Random(seed)
    cases = positives(per_kind=1, seed=seed) + negatives(seed=seed)
    texts, paths = [], []
    for c in rng.sample(cases, min(n, len(cases))):
        host = rng.choice(real_texts)
        cut = rng.randrange(len(host) + 1)
        texts.append(host[:cut] + "\n" + c["text"] + "\n" + host[cut:])
        paths.append(c["path"])
    texts += real_texts[:450]
    paths += ["lib/mod.py"] * 300 + ["conf/app.env"] * 150
    return texts, paths


def test_batch_gates_lose_no_finding(real_texts):
    """The batch path (RE2 prefilter per family, the compiled line scan) redacts exactly
    what running every detector on every text does, on real files holding the suite's
    credentials and look-alikes in every context, and on real files alone under code and
    configuration paths (where values need no quotes)."""
    from operators.schema import FILE_SCHEMA, conform

    texts, paths = _planted_suite(real_texts, 500, 5)
    texts += ['TO\u212aEN = "Zx81kQ0pLm2nBv7cXz9aQ"', 'credent\u0130al = "Zx81kQ0pLm2nBv7c"',
              'é\npassword = "hunter2hunter2"\n\u00fcber', "", "no quotes token here"]
    paths += ["a.py"] * 5
    t = conform(pa.table({"id": [str(i) for i in range(len(texts))],
                          "content": pa.array(texts, pa.large_string()), "path": paths}),
                FILE_SCHEMA)
    r = pii.Redactor()
    batch = r(t).column("content").to_pylist()
    direct = [r.redact(x, p)[0] for x, p in zip(texts, paths)]
    assert batch == direct
    assert sum(b != x for b, x in zip(batch, texts)) >= 300  # findings were made


def test_grouped_prefilter_gives_every_pattern_masks(real_texts):
    """Two alternations, then each pattern on the rows they matched: the same per-family
    masks as every pattern on every row."""
    texts, _ = _planted_suite(real_texts, 900, 7)
    rng = random.Random(7)
    texts += [f'V6 = "2a0{rng.randrange(10)}:' + ":".join(f"{rng.randrange(1, 65536):x}"
                                                          for _ in range(7)) + '"'
              for _ in range(20)]
    texts += ["", "xoxb-1-2-abc", "sk_live_" + "a" * 24, "abcdefghij" * 4 + "-us12",
              "12345678:" + "A" * 35]
    content = pa.array(texts + [None], pa.large_string())
    r = pii.Redactor()
    got = r.prefilter(content)
    patterns = [*pii._PREFILTER.items()] + [("tokens", p) for p in r._token_prefilters]
    want = {f: np.zeros(len(content), dtype=bool) for f in got}
    for family, pattern in patterns:
        want[family] |= pc.fill_null(pc.match_substring_regex(content, pattern),
                                     False).to_numpy(zero_copy_only=False)
    for family in want:
        assert got[family].tolist() == want[family].tolist(), family
    assert all(want[f].sum() > 10 for f in want), {f: int(want[f].sum()) for f in want}


def _plain_matches(index, doc_hashes: np.ndarray) -> np.ndarray:
    """Per item, its distinct shingles found in one document: one set lookup each."""
    counts = np.zeros(len(index.labels), dtype=np.int64)
    where = {int(h): p for p, h in enumerate(index.hashes)}
    for h in set(doc_hashes.tolist()):
        p = where.get(h)
        if p is not None:
            counts[index.item_ids[index.starts[p]:index.starts[p + 1]]] += 1
    return counts


def test_batch_decontamination_counts_equal_per_document_lookups(real_texts):
    import gzip

    from benchmarks.cleaning import humaneval_variants
    from operators.benchmarks import _packaged
    from operators.decontam import Decontaminate
    from operators.minhash import shingle_hashes

    with gzip.open(_packaged("humaneval"), "rt") as f:
        problems = [json.loads(line) for line in f][:40]
    rng = random.Random(3)
    texts = list(real_texts[:300])
    for p in problems:  # whole and partial copies, inside real files
        for variant in humaneval_variants(p).values():
            cut = rng.randrange(len(variant) // 2, len(variant) + 1)
            host = rng.choice(real_texts)
            texts.append(host[:2000] + "\n" + variant[:cut] + "\n" + host[2000:4000])
    d = Decontaminate()
    d.setup()
    content = pa.array(texts + [""], pa.large_string())
    hashes, offsets = shingle_hashes(content, d.ngram, lower=True)
    docs, items, shared = d.index.batch_matches(hashes, offsets)
    got = np.zeros((len(texts) + 1, len(d.index.labels)), dtype=np.int64)
    got[docs, items] = shared
    for k in range(len(texts) + 1):
        assert got[k].tolist() == _plain_matches(
            d.index, hashes[offsets[k]:offsets[k + 1]]).tolist(), k
    assert (got.sum(axis=1) > 0).sum() >= 150  # most planted copies share shingles


def test_batch_keyword_lines_give_the_per_text_findings(real_texts):
    """The lines found for a whole batch in one compiled pass lead to the findings of the
    per-text line search (str.lower and str.find), on real files with planted secrets and
    on text whose non-ASCII characters lower-case to ASCII (the Kelvin sign, dotted I)."""
    texts, paths = _planted_suite(real_texts, 400, 11)
    texts += ['TO\u212aEN = "Zx81kQ0pLm2nBv7cXz9aQ"', 'credent\u0130al = "Zx81kQ0pLm2nBv7cXz9"',
              'é\npassword = "hunter2hunter2"\n\u00fcber', "", "no quotes token here",
              'x = 1  # ApI-KeY: "Zx81kQ0pLm2nBv7cXz9"', 'KEY = "Zx81kQ0pLm2nBv7cXz9"']
    paths += ["a.py"] * 7
    r = pii.Redactor()
    rows = np.arange(len(texts))
    lines = r.keyword_lines(pa.array(texts, pa.large_string()), rows, texts)
    found = 0
    for i, text in enumerate(texts):
        plain = r._keyword_spans(text, paths[i])
        assert r._keyword_spans(text, paths[i], lines.get(i, [])) == plain, i
        found += bool(plain)
    assert found >= 150


# -- MinHash ---------------------------------------------------------------------------------
_M64 = (1 << 64) - 1


def _plain_mix(x: int) -> int:
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def _plain_shingles(text: str, ngram: int, lower: bool = False) -> tuple[list[int], int]:
    """The scheme of operators/minhash.py in plain Python: tokens are the runs of
    [A-Za-z0-9_] (bytes), FNV-1a per token through splitmix64, a shingle the rotated XOR of
    its ``ngram`` token hashes plus ``ngram`` through splitmix64."""
    toks = [t for t in re.split(rb"[^A-Za-z0-9_]+", text.encode()) if t]
    hashes = []
    for t in toks:
        h = 0xCBF29CE484222325
        for c in (t.lower() if lower else t):
            h = ((h ^ c) * 0x100000001B3) & _M64
        hashes.append(_plain_mix(h))
    out = []
    for i in range(ngram - 1, len(hashes)):
        s = 0
        for j in range(ngram):
            x, k = hashes[i - ngram + 1 + j], (13 * j) % 63 + 1
            s ^= ((x << k) | (x >> (64 - k))) & _M64
        out.append(_plain_mix((s + ngram) & _M64))
    return out, len(hashes)


def test_minhash_kernels_equal_the_plain_form(real_texts):
    """operators/kernels/minhash.py: shingle hashes, signatures and band hashes equal a
    plain-Python form of the same scheme, on real files and Unicode and separator fuzz."""
    from operators.minhash import band_hashes, permutations, shingle_hashes, signatures

    texts = list(real_texts[:40]) + _fuzz(["a", "B", "_", "0", " ", "\n", ";", "é", "中",
                                           "\U0001f600", "ab_9", "X"], 400, 40, 11) + ["", "x"]
    arr = pa.array(texts, pa.large_string())
    for lower in (False, True):
        hashes, starts = shingle_hashes(arr, 5, lower=lower)
        for d, text in enumerate(texts):
            assert hashes[starts[d]:starts[d + 1]].tolist() == _plain_shingles(
                text, 5, lower)[0], d
    sigs, n_tok = signatures(arr, num_perm=16, ngram=5, seed=3)
    a, b = permutations(16, 3)
    for d, text in enumerate(texts):
        shingles, n = _plain_shingles(text, 5)
        assert n_tok[d] == n
        want = [min(((int(a[j]) * s + int(b[j])) & _M64 for s in shingles), default=_M64)
                for j in range(16)]
        assert sigs[d].tolist() == want, d
    bands = band_hashes(sigs, 4, 4)
    for d in range(len(texts)):
        for band in range(4):
            h = (0x9E3779B97F4A7C15 * (band + 1)) & _M64
            for j in range(4):
                h = _plain_mix(h ^ int(sigs[d, band * 4 + j]))
            assert int(bands[d, band]) == h
