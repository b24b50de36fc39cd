"""Credentials found by where they stand rather than by their shape: values assigned to a
secret-sounding name in any of the syntaxes code and configuration use, passwords inside
connection strings and URLs, private-key blocks (also with escaped newlines, as in cloud
service-account JSON files).

A name is secret-sounding when its words (split at ``_``, ``-``, ``.`` and camel case)
name a password (``password``, ``passwd``, ``pwd``, ``pass``...) or a secret (``secret``,
``token``, ``credentials``, ``auth``, ``bearer``, ``api`` + ``key``, ``access`` + ``key``...)
and none of its words says it is about the secret rather than the secret itself
(``token_url``, ``password_field``, ``secret_name``, ``key_id``, ``max_tokens``...).

Assignments seen (name, then value): ``NAME = "v"`` (Python, Ruby, JS, C-likes, PHP ``$``),
``name := "v"`` (Go), ``let name: &str = "v"`` (type annotations), ``"name": "v"`` (JSON,
dicts), ``name: v`` (YAML), ``NAME=v`` and ``export NAME=v`` (.env, shell), ``name = v``
(INI, TOML, properties), ``ENV NAME v`` / ``ARG NAME=v`` (Dockerfiles), ``f(name="v")``
(keyword arguments), ``define('NAME', 'v')`` and ``getenv("NAME", "v")`` (name and value as
string arguments), ``<add key="Name" value="v"/>`` and ``<name>v</name>`` (XML),
``--name v`` / ``--name=v`` (command lines), ``Authorization: Bearer v`` (headers), and any
of these inside a notebook's JSON strings (escaped quotes). Unquoted values count in
configuration, shell and documentation files, and after ``export``/``ENV``/``ARG``/``set``
or a ``--flag`` anywhere; in code an unquoted value is a reference to another variable.

A value counts when it is not a placeholder (``changeme``, ``<token>``, ``${VAR}``,
``xxxx``, ``your-api-key``...), a reference (``os.environ[...]``, ``self.x``, a call), a
path, a URL, words (``"secret_key"``, ``"GITHUB_TOKEN"``) or a sequence (``abcdef123456``);
a secret also needs a digit or, letters only, mixed case and an entropy of at least
``min_entropy`` bits per character (less for short values: a 12-character value cannot
reach 4 bits). Hex digests and UUIDs count under a secret name (Heroku and Datadog keys,
Twilio and GitHub OAuth secrets have those shapes); under ``hash``/``sha``/``id`` they are
not secrets and the name already excludes them.
"""

from __future__ import annotations

import functools
import math
import os
import re
from collections import Counter

from operators.secret_formats import PUBLIC_VALUES

PASSWORD_WORDS = frozenset("password passwd pwd passphrase pass pw passwort passcode "
                           "contrasena senha motdepasse".split())
SECRET_WORDS = frozenset("secret secrets token credential credentials creds cred bearer jwt "
                         "dsn auth authorization apikey accesskey secretkey privatekey "
                         "authkey masterkey licensekey appkey clientkey signingkey "
                         "subscriptionkey accesstoken authtoken apitoken sas "
                         "refreshtoken idtoken sessiontoken webhooksecret".split())
#: a ``key`` word is a secret's after one of these (``api_key``, ``x-api-key``, ``sas_key``)
KEY_QUALIFIERS = frozenset("api access secret private auth signing sign encryption encrypt "
                           "master license licence account app client service webhook admin "
                           "session subscription sas shared storage consumer developer dev prod "
                           "live server rest write read ingest deploy hmac jwt crypt cipher "
                           "aes gpg ssh".split())
#: words that make a name about a secret, not the secret (checked after the secret words)
NOT_SECRET_WORDS = frozenset(
    "hash hashed hasher digest checksum sha md5 fingerprint id ids name names url urls uri "
    "endpoint host path file filename files dir type types length len size count max min "
    "limit prefix suffix field fields column label placeholder regex pattern format public "
    "pub env var kind policy expiry expires expiration ttl timeout cache sort primary foreign "
    "param params index error errors message msg description desc help hint title example "
    "examples mock fake dummy template location provider store manager generator validator "
    "verifier required enabled disabled mode method algorithm alg version scope scopes "
    "audience issuer counter usage budget rule rules validation strength widget form input "
    "prompt display header headers policy rotation reset expire expired valid invalid "
    "tokenizer tokenize tokenized tokens tokenizers detokenize author authors authority "
    "authorize authorized authorizer authenticated authentication authenticator method "
    "methods flow handler backend class module service lookup exists missing pair chain "
    "store stores level levels bits encoding encoder decoder parser regexp schema spec "
    "key_id keyid keyring keystore keychain keyfile keypair keyspace keyword keywords "
    "callback redirect request response status state".split())

#: configuration, shell and documentation files, where a value needs no quotes
#: configuration, shell and documentation files, where a value needs no quotes (one
#: pattern for Python's re and RE2: the batch prefilter uses it on the path column)
CONFIG_PATH = (r"(?i)(?:\.(?:env|ini|cfg|conf|config|properties|prop|ya?ml|toml|sh|bash|zsh|"
               r"ksh|fish|ps1|bat|cmd|md|markdown|rst|txt|tf|tfvars|hcl|npmrc|pypirc|netrc|"
               r"gradle|dockerfile)|(?:^|/)(?:\.env[\w.-]*|[\w.-]*\.env|Dockerfile[\w.-]*|"
               r"Makefile|credentials|config|\.s3cfg|\.boto|\.pgpass|Procfile))$")
_CONFIG_PATH = re.compile(CONFIG_PATH)
_SHELL_EXT = frozenset("sh bash zsh ksh fish env".split())

#: lowercase words one of which every secret-sounding name holds (as ASCII case folding
#: sees it); ``key`` counts only after one of :data:`KEY_QUALIFIERS`, as in
#: :func:`secret_name` (``api_key``, ``AccessKey``)
SECRET_LITERALS = ("pass", "pwd", "secret", "token", "auth", "cred", "bearer", "jwt", "dsn",
                   "contrase", "senha", "key")
#: the same as one RE2 pattern
WORD_PATTERN = ("(?i)(?:pass|pwd|secret|token|auth|cred|bearer|jwt|dsn|contrase|senha|(?:"
                + "|".join(sorted(KEY_QUALIFIERS)) + ")[_.-]?key)")
_W = WORD_PATTERN[4:]
#: an RE2 pattern every line :func:`assignment_spans` finds a value on matches, outside
#: configuration files (:data:`CONFIG_PATH`, where a secret word is enough): a name with
#: a secret word, then a quoted value after an operator, a type annotation or an XML
#: ``value=``; a shell or Dockerfile command or a ``--flag``; an auth scheme and a value;
#: a URL query parameter
ASSIGNMENT_PATTERN = (
    "(?i)" + _W + r"[\w.$-]{0,40}[\"'`\])]{0,2}(?:[ \t]*:[ \t]*[\w&<>\[\]. '?*]{1,30}?)?"
    r"[ \t]*(?:=>|:=|=|:|,|\s+value\s*=)[ \t>]*[rbuf@$]?\\?[\"'`]"
    r"|(?:^|\n)[ \t]*(?:export|env|arg|set|setx|-e|\$env:)[ \t][^\n]*" + _W
    + r"|--[\w.-]*" + _W + r"|(?:bearer|basic)[ \t]+[\w.~+/=-]{6}"
    + r"|[?&][\w.-]*" + _W + r"[\w.-]*=[^&\s\"'#]{6}"
    + r"|<[\w.:-]*" + _W + r"[\w.:-]*>[^<\s]")
_WORD_HIT = re.compile("(?i)" + "|".join(SECRET_LITERALS))
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.$@-")
#: the rest of a call after its last string argument
_CALL_END = re.compile(r"\s*\)")
_QUERY_VALUE = re.compile(r"[^&\s\"'#`<>]+")
_USER_PASSWORD = re.compile(r"^[^:\s/@]{1,64}:[^:\s/@]+$")
_CAMEL = re.compile(r"([a-z0-9])([A-Z])|([A-Z]+)([A-Z][a-z])")
_TYPE_ANNOTATION = re.compile(r"\s*:\s*[\w&<>\[\]. '?*]{1,30}?(?=\s*=)|\s+[\w.\[\]*]+(?=\s*=)")
_OPERATOR = re.compile(r"\s*(?::=|=>|\?\?=|\|\|=|==?|:|,|\|\||\?\?|\bor\b|\s+value\s*=)\s*"
                       r"|[ \t]+(?=[^\s=:])")
_AUTH_SCHEME = re.compile(r"(?:Bearer|Basic|Token|token|Digest|Api-Key|ApiKey|Key)\s+")
_UNQUOTED = re.compile(r"[^\s'\"`,;)\]}\\]+")
_LINE_COMMAND = re.compile(r"^\s*(?:export|ENV|ARG|set|setx|SET|-e|\$env:)\s", re.I)

_PLACEHOLDER = re.compile(
    r"(?i)^(?:x+|\*+|\.+|#+|-+|_+|0+|<.*>|\{.*\}|\[.*\]|\(.*\)|\$.*|%.*|@.*@|none|null|nil|"
    r"true|false|undefined|changeme|change_?me|change_?it|password\d*|passw0rd|secret\d*|"
    r"token|test\w*|example\w*|sample\w*|dummy\w*|fake\w*|mock\w*|placeholder\w*|redacted|"
    r"hidden|your\w*|my\w*|insert\w*|enter\w*|replace\w*|put\w*|todo|fixme|tbd|n/?a|default|"
    r"empty|required|optional|string|str|value|foo\w*|bar|baz|qwerty\w*|letmein|admin\w*|"
    r"root|guest|pass|abc\w*|sk-\.\.\.|sk_test_\.\.\.|\w*_here|\w*-here)$")
_PLACEHOLDER_PART = re.compile(r"(?i)xxxx|\*\*\*|\.\.\.|your[_-]|<|>|\{\{|\}\}|\$\{|%\(|"
                               r"replace[_-]?me|change[_-]?me|placeholder|example|dummy|"
                               r"redacted|insert[_-]|\s|\\|\[.*\]|password|passwd|secret|"
                               r"token")
_TOKEN_PLACEHOLDER = re.compile(r"(?i)example|xxxx|\*\*\*|\.\.\.|your|dummy|fake|sample|"
                                r"placeholder|redacted|<|\{|0{10}")
_REFERENCE = re.compile(r"^(?:os\.|process\.env|env\[|ENV\[|getenv|self\.|this\.|config\.|"
                        r"settings\.|secrets\.|vault\.|\w+://|\w+\()")
#: a file path: two or more segments, or one with an extension
_PATH = re.compile(r"^(?:\.{0,2}/|~/)(?:[\w.-]+/)+[\w.-]*$|^(?:\.{0,2}/|~/)[\w-]*\.\w{1,5}$")
_WORDS_ONLY = re.compile(r"^[a-z]+(?:[_\-. ][a-z]+)*$|^[A-Z]+(?:[_\-.][A-Z]+)*$|"
                         r"^[A-Z]?[a-z]{2,}(?:[A-Z][a-z]{2,})*$")
_FILE_NAME = re.compile(r"(?i)^[\w.-]+\.(key|pem|crt|cer|p12|pfx|txt|json|ya?ml|cfg|ini|conf|"
                        r"env|js|py|rb|sh|html?|php|xml|png|jpe?g|gif|svg|csv|log)$")
_SEQUENCES = ("abcdefghijklmnopqrstuvwxyz", "0123456789", "qwertyuiopasdfghjklzxcvbnm")


def words(name: str) -> list[str]:
    """A name's lowercase words: split at non-alphanumerics and at camel-case humps."""
    s = _CAMEL.sub(lambda m: f"{m.group(1)}_{m.group(2)}" if m.group(1) else
                   f"{m.group(3)}_{m.group(4)}", name)
    return [w for w in re.split(r"[^A-Za-z0-9]+", s.lower()) if w]


#: a word ending in one of these is a secret's name (``datadogapikey``, ``dbpassword``)
_SECRET_ENDINGS = ("password", "passwd", "passphrase", "apikey", "accesskey", "secretkey",
                   "privatekey", "authkey", "token", "secret", "credentials")


@functools.lru_cache(maxsize=1 << 16)
def secret_name(name: str) -> str | None:
    """``"password"`` or ``"secret"`` for a secret-sounding name, else None."""
    ws = words(name)
    if not ws:
        return None
    joined = "".join(ws)
    kind = None
    if any(w in PASSWORD_WORDS or w.startswith("password") or w.endswith(("password",
                                                                          "passwd"))
           for w in ws):
        kind = "password"
    elif (any(w in SECRET_WORDS or ("secret" in w and "secretar" not in w)
              or (w.endswith(_SECRET_ENDINGS) and w not in NOT_SECRET_WORDS) for w in ws)
          or any(w == "key" and i > 0 and ws[i - 1] in KEY_QUALIFIERS
                 for i, w in enumerate(ws))):
        kind = "secret"
    if kind is None:
        return None
    if any(w in NOT_SECRET_WORDS for w in ws) or joined.endswith(("keyid", "tokenid")):
        return None
    return kind


def entropy(value: str) -> float:
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values()) if n else 0.0


def plausible(value: str, kind: str, min_entropy: float = 4.0) -> bool:
    """Whether ``value``, assigned to a name of ``kind``, looks like a real credential."""
    n = len(value)
    if n < (6 if kind == "password" else 8) or n > 1000:
        return False
    if _PLACEHOLDER.match(value) or _PLACEHOLDER_PART.search(value) or _REFERENCE.match(value):
        return False
    if _WORDS_ONLY.match(value) or _FILE_NAME.match(value) or _PATH.match(value) or len(
            set(value)) < 4:
        return False
    low = value.lower()
    stem = low.rstrip("0123456789")  # "abcdef123": a run of a sequence, then digits
    if any(low in s or (len(low) > 3 and stem and s.startswith(stem)) for s in _SEQUENCES):
        return False
    if kind == "password" or any(c.isdigit() for c in value):
        return True
    # letters only: random (mixed case, as much entropy as its length allows), not a word
    return (value.lower() != value and value.upper() != value
            and entropy(value) >= min(min_entropy, math.log2(n) - 0.7))


def placeholder_token(value: str) -> bool:
    """A vendor-shaped token that is a documentation example or a template
    (``AKIAIOSFODNN7EXAMPLE``, ``sk_test_xxxx...``): its body repeats a few characters or
    spells a placeholder."""
    return bool(_TOKEN_PLACEHOLDER.search(value)) or len(set(value[-16:])) < 6


def config_like(path: str) -> bool:
    return bool(_CONFIG_PATH.search(path or ""))


def shell_like(path: str) -> bool:
    base = os.path.basename(path or "")
    ext = base.rsplit(".", 1)[-1].lower() if "." in base else base.lower()
    return ext in _SHELL_EXT or base.startswith((".env", "Dockerfile")) or ext == "dockerfile"


def _quoted(rest: str, i: int) -> tuple[int, int] | None:
    """The span of a quoted string opening at ``rest[i]`` (``"``, ``'``, `````, each
    maybe escaped with a backslash, as in JSON-held code), without its quotes."""
    esc = rest[i] == "\\"
    if esc and i + 1 >= len(rest):
        return None
    q = rest[i + 1] if esc else rest[i]
    if q not in "\"'`":
        return None
    start = i + (2 if esc else 1)
    end = rest.find(("\\" + q) if esc else q, start)
    while end > 0 and not esc and rest[end - 1] == "\\":
        end = rest.find(q, end + 1)
    return (start, end) if end > start else None


def _names(line: str):
    """(start, end) of each name in ``line`` that holds one of the secret words: a run of
    name characters around each hit of :data:`_WORD_HIT`, without leading dashes (a
    ``--flag``) or trailing dots."""
    done = -1
    for h in _WORD_HIT.finditer(line):
        if h.start() < done:
            continue
        a, b = h.start(), h.end()
        while a > 0 and line[a - 1] in _NAME_CHARS:
            a -= 1
        while b < len(line) and line[b] in _NAME_CHARS:
            b += 1
        done = b
        while a < b and line[a] in "-.":
            a += 1
        while b > a and line[b - 1] in "-.":
            b -= 1
        if b > a:
            yield a, b


def assignment_spans(line: str, unquoted_ok: bool, min_entropy: float = 4.0
                     ) -> list[tuple[int, int, str]]:
    """(start, end, kind) in ``line`` of each value assigned to a secret-sounding name."""
    out = []
    command = bool(_LINE_COMMAND.match(line))
    unquoted_ok = unquoted_ok or command
    for start, end in _names(line):
        kind = secret_name(line[start:end].lstrip("$@"))
        if kind is None or (start > 0 and line[start - 1] in ":/\\"
                            and line[start - 2:start] not in ('\\"', "\\'")):
            continue  # AWS::ApiKey, a/path/token: part of a longer name
        name_quoted = start > 0 and line[start - 1] in "\"'`"
        flag = line[max(0, start - 2):start] == "--"
        query = start > 0 and line[start - 1] in "?&"
        i = end
        while i < len(line) and line[i] in "\\\"'`])":
            i += 1
        t = _TYPE_ANNOTATION.match(line, i)
        if t and not name_quoted:
            i = t.end()
        op = _OPERATOR.match(line, i)
        if op is None:
            continue
        sep = op.group(0).strip()
        if sep in ("==", "||", "??", "or") or (not sep and not (flag or command)):
            continue
        if sep == "," and not name_quoted:
            continue  # f(password, "x"): a positional argument, not this name's value
        i = op.end()
        while i + 1 < len(line) and line[i] in "rbuf@$" and line[i + 1] in "\"'`\\":
            i += 1  # string prefixes: r"...", b'...', f"...", @"...", $"..."
        span = _quoted(line, i) if i < len(line) and line[i] in "\"'`\\" else None
        bare_scheme = _AUTH_SCHEME.match(line, i) if span is None else None
        if bare_scheme:  # Authorization: Bearer <value>, unquoted
            i = bare_scheme.end()
        if span is None:
            if sep == "," or not (unquoted_ok or flag or (query and sep == "=")
                                  or (bare_scheme and sep == ":")):
                continue
            v = (_QUERY_VALUE if query else _UNQUOTED).match(line, i)
            if v is None:
                continue
            span = v.span()
        elif sep == "," and not _CALL_END.match(line, span[1] + 1):
            continue  # a list of strings, not define("NAME", "value") or getenv(...)
        a, b = span
        scheme = _AUTH_SCHEME.match(line, a, b)
        if scheme and scheme.end() < b:
            a = scheme.end()
            v = _UNQUOTED.match(line, a, b)
            b = v.end() if v else b
            if scheme.group(0).startswith("Basic") and not _basic_credentials(line[a:b]):
                continue
        value = line[a:b]
        if _USER_PASSWORD.match(value):  # auth="user:password": judge the password
            value = value.split(":", 1)[1]
            kind = "password"
        if plausible(value, kind, min_entropy) and value not in PUBLIC_VALUES:
            out.append((a, b, kind))
    return out


def _basic_credentials(value: str) -> bool:
    """Whether an HTTP Basic value decodes to ``user:password`` with a plausible
    password (``dXNlcjpwYXNz`` is ``user:pass``)."""
    import base64
    import binascii

    try:
        user, _, pw = base64.b64decode(value + "=" * (-len(value) % 4)).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return True
    return plausible(pw, "password")


_URL_CREDENTIALS = re.compile(
    r"\b[A-Za-z][A-Za-z0-9+.-]{1,30}://([^\s:/@'\"`<>()\[\]{}]{0,128}):"
    r"([^\s@'\"`<>/]{3,256})@([A-Za-z0-9\[][^\s/'\"`<>:;,)?#]*)")
_EXAMPLE_HOST = re.compile(r"(?i)(^|\.)(example\.(com|org|net)|localhost|[^.]+\.(test|example|"
                           r"invalid|localhost))$")
_ADO_PASSWORD = re.compile(
    r"(?i)(?:^|[;\"'\s])(?:password|pwd|accountkey|sharedaccesskey)\s*=\s*"
    r"([^;\"'\s<>{}$]{4,200})(?=\s*;)")
_XML_ELEMENT = re.compile(r"<([A-Za-z_][\w.:-]*)>([^<>\s]{6,400})</\1>")


def url_password_spans(text: str) -> list[tuple[int, int, str]]:
    """Passwords in ``scheme://user:password@host`` and in ``...;Password=v;...``
    connection strings."""
    out = []
    for m in _URL_CREDENTIALS.finditer(text):
        v = m.group(2)
        if not (_PLACEHOLDER.match(v) or _PLACEHOLDER_PART.search(v) or v.startswith(("$", "%"))
                or v.isdigit() or "pass" in v.lower() or _EXAMPLE_HOST.search(m.group(3))):
            out.append((m.start(2), m.end(2), "password"))
    for m in _ADO_PASSWORD.finditer(text):
        if plausible(m.group(1), "password"):
            out.append((m.start(1), m.end(1), "password"))
    return out


def xml_element_spans(text: str, min_entropy: float = 4.0) -> list[tuple[int, int, str]]:
    out = []
    for m in _XML_ELEMENT.finditer(text):
        kind = secret_name(m.group(1).rsplit(":", 1)[-1])
        if kind and plausible(m.group(2), kind, min_entropy):
            out.append((m.start(2), m.end(2), kind))
    return out


_PRIVATE_KEY = re.compile(
    r"-----BEGIN ((?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?)-----"
    r"(?:[^\n\\]*\r?\n|(?:\\r)?\\n)([\s\S]*?)(?:(?:\\r)?\\n|\n)?[ \t\"',+]*-----END \1-----")
_BASE64_RUN = re.compile(r"\\[nrt]|[A-Za-z0-9+/=]{2,}")


def private_key_spans(text: str) -> list[tuple[int, int, str]]:
    """The body of each private-key block, between its BEGIN and END lines, as one span;
    or, where the body spans several string literals or escaped newlines, as its base64
    runs (the first carries the placeholder, the rest are cleared: ``kind`` None), so that
    the quotes and escapes around them stay and the file stays valid."""
    out = []
    for m in _PRIVATE_KEY.finditer(text):
        body_start, body = m.start(2), m.group(2)
        if not body.strip():
            continue
        if not re.search(r"[\"'\\]", body):  # the indentation around it stays (YAML)
            lead = len(body) - len(body.lstrip())
            out.append((body_start + lead, body_start + len(body.rstrip()), "private_key"))
            continue
        first = True
        for r in _BASE64_RUN.finditer(body):
            if r.group(0).startswith("\\"):
                continue
            out.append((body_start + r.start(), body_start + r.end(),
                        "private_key" if first else None))
            first = False
    return out
