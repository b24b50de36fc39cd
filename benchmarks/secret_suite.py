"""A labelled credential suite built from the formats providers document, in many file
contexts, with a look-alike negative set; for the redaction tests and
``benchmarks/cleaning.py``.

Positives: for each credential kind, random values in the documented shape (prefix,
alphabet, length: see :data:`FORMATS`), each written into every file context it fits
(:data:`CONTEXTS`: Python, JS/TS, Go, Java, a JSON config, YAML, ``.env``, INI, Java
properties, shell, a Dockerfile, XML, a Jupyter notebook, TOML, Terraform, a curl line in
Markdown), under a name a developer would give it (``STRIPE_SECRET_KEY``) or, for the kinds
with a shape of their own, under a plain name (``STRIPE = ...``: no secret word). A case is
redacted when the value is gone from the output.

Negatives: what looks like a credential and is not one: placeholders and templates,
environment lookups, hashes and UUIDs under non-secret names, lockfile integrity lines,
test fixtures, base64 data, tokens with an ``EXAMPLE`` body or the wrong length, words. A
negative is changed when the redactor changes the text at all.
"""

from __future__ import annotations

import base64
import json
import random
import string
import uuid

LOWER, UPPER, DIGITS = string.ascii_lowercase, string.ascii_uppercase, string.digits
ALNUM = LOWER + UPPER + DIGITS
HEX = DIGITS + "abcdef"
URLSAFE = ALNUM + "_-"
B64 = ALNUM + "+/"
BASE32 = UPPER + "234567"


def _r(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _pem(rng: random.Random, label: str = "RSA PRIVATE KEY", lines: int = 8) -> str:
    body = "\n".join(_r(rng, B64, 64) for _ in range(lines))
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----\n"


def _jwt(rng: random.Random) -> str:
    def seg(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    head = seg({"alg": rng.choice(["HS256", "RS256"]), "typ": "JWT"})
    body = seg({"sub": str(rng.randrange(10**9)), "iat": rng.randrange(10**9, 2 * 10**9)})
    return f"{head}.{body}.{_r(rng, URLSAFE, 43)}"


def _password(rng: random.Random) -> str:
    words = ["Tr0ub4dor", "s3cure", "Pa55", "m0nkey", "Dr4gon", "w1nter", "Orange7", "k1tten"]
    return rng.choice(words) + rng.choice("!@#%&*") + _r(rng, DIGITS + LOWER, rng.randint(3, 6))


#: kind -> (value maker, names with a secret word, a name without one or None: the kind
#: has no shape of its own and is found by its name only)
FORMATS: dict = {
    "aws_access_key_id": (lambda g: "AKIA" + _r(g, BASE32, 16),
                          ["AWS_ACCESS_KEY_ID", "aws_access_key"], "aws_id"),
    "aws_secret_access_key": (lambda g: _r(g, B64, 40),
                              ["AWS_SECRET_ACCESS_KEY", "aws_secret_key"], None),
    "github_classic": (lambda g: g.choice(["ghp_", "gho_", "ghs_"]) + _r(g, ALNUM, 36),
                       ["GITHUB_TOKEN", "gh_token"], "gh"),
    "github_fine_grained": (lambda g: "github_pat_11" + _r(g, UPPER + DIGITS, 20) + "_"
                            + _r(g, ALNUM, 59), ["GITHUB_PAT", "githubToken"], "gh"),
    "gitlab": (lambda g: "glpat-" + _r(g, URLSAFE, 20), ["GITLAB_TOKEN"], "gitlab"),
    "slack_bot": (lambda g: f"xoxb-{g.randrange(10**11, 10**12)}-{g.randrange(10**12, 10**13)}-"
                  + _r(g, ALNUM, 24), ["SLACK_BOT_TOKEN"], "slack"),
    "slack_app": (lambda g: f"xapp-1-A{_r(g, UPPER + DIGITS, 10)}-"
                  f"{g.randrange(10**12, 10**13)}-" + _r(g, HEX, 64),
                  ["SLACK_APP_TOKEN"], "slack_app"),
    "slack_webhook": (lambda g: "https://hooks.slack.com/services/T" + _r(g, UPPER + DIGITS, 8)
                      + "/B" + _r(g, UPPER + DIGITS, 8) + "/" + _r(g, ALNUM, 24),
                      ["SLACK_WEBHOOK_URL"], "slack_hook"),
    "stripe_live": (lambda g: "sk_live_" + _r(g, ALNUM, 99), ["STRIPE_SECRET_KEY"], "stripe"),
    "stripe_restricted": (lambda g: "rk_test_" + _r(g, ALNUM, 24), ["STRIPE_API_KEY"],
                          "stripe"),
    "openai_project": (lambda g: "sk-proj-" + _r(g, URLSAFE, 74) + "T3BlbkFJ"
                       + _r(g, URLSAFE, 74), ["OPENAI_API_KEY", "openai_key"], "openai"),
    "anthropic": (lambda g: "sk-ant-api03-" + _r(g, URLSAFE, 93) + "AA",
                  ["ANTHROPIC_API_KEY"], "claude"),
    "huggingface": (lambda g: "hf_" + _r(g, LOWER + UPPER, 34), ["HF_TOKEN"], "hf"),
    "google_api_key": (lambda g: "AIza" + _r(g, URLSAFE, 35), ["GOOGLE_API_KEY"], "maps"),
    "google_oauth_secret": (lambda g: "GOCSPX-" + _r(g, URLSAFE, 28),
                            ["GOOGLE_CLIENT_SECRET"], "google"),
    "digitalocean": (lambda g: "dop_v1_" + _r(g, HEX, 64), ["DIGITALOCEAN_TOKEN"], "do"),
    "grafana": (lambda g: "glsa_" + _r(g, ALNUM, 32) + "_" + _r(g, HEX, 8),
                ["GRAFANA_API_KEY"], "grafana"),
    "vault": (lambda g: "hvs." + _r(g, URLSAFE, 91), ["VAULT_TOKEN"], "vault"),
    "new_relic": (lambda g: "NRAK-" + _r(g, UPPER + DIGITS, 27), ["NEW_RELIC_API_KEY"], "nr"),
    "databricks": (lambda g: "dapi" + _r(g, HEX, 32), ["DATABRICKS_TOKEN"], "dbx"),
    "shopify": (lambda g: "shpat_" + _r(g, HEX, 32), ["SHOPIFY_ACCESS_TOKEN"], "shop"),
    "npm": (lambda g: "npm_" + _r(g, ALNUM, 36), ["NPM_TOKEN"], "npm"),
    "pypi": (lambda g: "pypi-AgEIcHlwaS5vcmc" + _r(g, URLSAFE, 70), ["PYPI_API_TOKEN"], "pypi"),
    "sentry_dsn": (lambda g: f"https://{_r(g, HEX, 32)}@o{g.randrange(10**5, 10**6)}"
                   f".ingest.sentry.io/{g.randrange(10**6, 10**7)}", ["SENTRY_DSN"], "sentry"),
    "discord_bot": (lambda g: "M" + _r(g, ALNUM, 25) + "." + _r(g, URLSAFE, 6) + "."
                    + _r(g, URLSAFE, 38), ["DISCORD_TOKEN"], "bot"),
    "twitter_bearer": (lambda g: "AAAAAAAAAAAAAAAAAAAAA" + _r(g, ALNUM, 80),
                       ["TWITTER_BEARER_TOKEN"], "twitter"),
    "azure_client_secret": (lambda g: _r(g, ALNUM, 3) + g.choice(DIGITS) + "Q~"
                            + _r(g, ALNUM + "_~.-", 34), ["AZURE_CLIENT_SECRET"], None),
    "sendgrid": (lambda g: "SG." + _r(g, URLSAFE, 22) + "." + _r(g, URLSAFE, 43),
                 ["SENDGRID_API_KEY"], "mail"),
    "twilio_auth_token": (lambda g: _r(g, HEX, 32), ["TWILIO_AUTH_TOKEN"], None),
    "datadog_api_key": (lambda g: _r(g, HEX, 32), ["DD_API_KEY", "datadogApiKey"], None),
    "heroku_api_key": (lambda g: str(uuid.UUID(int=g.getrandbits(128))), ["HEROKU_API_KEY"],
                       None),
    "jwt": (_jwt, ["JWT_TOKEN", "auth_token"], "session"),
    "password": (_password, ["DB_PASSWORD", "password", "smtp_pass"], None),
    "short_token": (lambda g: _r(g, ALNUM, 12), ["API_TOKEN", "access_token"], None),
    "postgres_url": (lambda g: f"postgresql://app:{_password(g)}@db{g.randrange(9)}"
                     ".internal:5432/app", ["DATABASE_URL"], "db"),
    "mongodb_url": (lambda g: f"mongodb+srv://admin:{_password(g)}@cluster0.{_r(g, LOWER, 5)}"
                    ".mongodb.net/prod", ["MONGO_URI"], "mongo"),
    "redis_url": (lambda g: f"redis://default:{_r(g, ALNUM, 20)}@cache.internal:6379/0",
                  ["REDIS_URL"], "cache"),
    "azure_storage": (lambda g: "DefaultEndpointsProtocol=https;AccountName=acct"
                      f"{g.randrange(99)};AccountKey={_r(g, B64, 86)}==;"
                      "EndpointSuffix=core.windows.net", ["AZURE_STORAGE_CONNECTION_STRING"],
                      "storage"),
}

#: kinds whose value is written as a block, not on one line
BLOCK_KINDS = {"private_key": lambda g: _pem(g, g.choice(
    ["RSA PRIVATE KEY", "PRIVATE KEY", "OPENSSH PRIVATE KEY", "EC PRIVATE KEY"]))}


def _json_str(v: str) -> str:
    return json.dumps(v)


#: context -> (file name, render(name, value) -> file text)
CONTEXTS: dict = {
    "python": ("app/config.py", lambda n, v: f'import os\n\n{n} = "{v}"\nDEBUG = False\n'),
    "python_call": ("app/client.py",
                    lambda n, v: f'client = Client(\n    {n.lower()}="{v}",\n    timeout=30,\n)\n'),
    "javascript": ("src/config.js",
                   lambda n, v: f"const {n} = '{v}';\nmodule.exports = {{ {n} }};\n"),
    "typescript": ("src/env.ts", lambda n, v: f'export const {n}: string = "{v}";\n'),
    "go": ("cmd/main.go",
           lambda n, v: f'package main\n\nfunc main() {{\n\t{n} := "{v}"\n\t_ = {n}\n}}\n'),
    "java": ("src/Main.java",
             lambda n, v: f'class Main {{\n    private static final String {n} = "{v}";\n}}\n'),
    "json": ("config/settings.json",
             lambda n, v: '{\n  "service": "api",\n  "' + n.lower() + '": ' + _json_str(v)
             + "\n}\n"),
    "yaml": ("deploy/values.yaml", lambda n, v: f"app:\n  replicas: 2\n  {n.lower()}: {v}\n"),
    "dotenv": (".env", lambda n, v: f"NODE_ENV=production\n{n}={v}\nPORT=8080\n"),
    "ini": ("setup.cfg", lambda n, v: f"[credentials]\n{n.lower()} = {v}\n"),
    "properties": ("src/main/resources/application.properties",
                   lambda n, v: f"server.port=8080\napp.{n.lower().replace('_', '.')}={v}\n"),
    "shell": ("scripts/deploy.sh", lambda n, v: f"#!/bin/sh\nexport {n}={v}\n./run.sh\n"),
    "dockerfile": ("Dockerfile", lambda n, v: f"FROM python:3.12\nENV {n}={v}\nCMD [\"app\"]\n"),
    "xml": ("web.config",
            lambda n, v: f'<appSettings>\n  <add key="{n}" value="{v}" />\n</appSettings>\n'),
    "notebook": ("analysis.ipynb", lambda n, v: json.dumps(
        {"cells": [{"cell_type": "code", "source": [f'{n} = "{v}"\n', "run()\n"]}]}, indent=1)),
    "toml": ("pyproject.toml", lambda n, v: f'[tool.app]\n{n.lower()} = "{v}"\n'),
    "terraform": ("main.tf", lambda n, v: f'provider "x" {{\n  {n.lower()} = "{v}"\n}}\n'),
    "markdown_curl": ("README.md", lambda n, v: 'Call it:\n\n```\ncurl -H "Authorization: '
                      f'Bearer {v}" https://api.x.io/v1\n```\n'),
}
#: kinds that only make sense in some contexts (a URL is not a bearer token)
_URL_KINDS = {"slack_webhook", "sentry_dsn", "postgres_url", "mongodb_url", "redis_url",
              "azure_storage"}


def positives(per_kind: int = 3, seed: int = 0) -> list[dict]:
    """Cases: {kind, context, named (a secret word in the name), path, text, value}."""
    rng = random.Random(seed)
    out = []
    for kind, (make, names, plain) in FORMATS.items():
        for ctx, (path, render) in CONTEXTS.items():
            if ctx == "markdown_curl" and (kind in _URL_KINDS or kind == "password"):
                continue
            for i in range(per_kind):
                value = make(rng)
                use_plain = plain is not None and i % 3 == 2
                name = plain.upper() if use_plain else names[i % len(names)]
                out.append({"kind": kind, "context": ctx, "named": not use_plain,
                            "path": path, "text": render(name, value), "value": value})
    for kind, make in BLOCK_KINDS.items():
        for i in range(per_kind * 4):
            pem = make(rng)
            body = pem.split("\n")[1]
            forms = {
                "file": ("keys/id_rsa", pem),
                "python": ("app/keys.py", f'KEY = """{pem}"""\n'),
                "json_escaped": ("sa.json", json.dumps(
                    {"type": "service_account", "private_key_id": _r(rng, HEX, 40),
                     "private_key": pem, "client_email": "svc@proj.iam.gserviceaccount.com"},
                    indent=2)),
                "yaml_block": ("k8s/secret.yaml", "data:\n  tls.key: |\n    "
                               + pem.replace("\n", "\n    ") + "\n"),
            }
            for ctx, (path, text) in forms.items():
                out.append({"kind": kind, "context": ctx, "named": True, "path": path,
                            "text": text, "value": body})
    return out


def negatives(seed: int = 1) -> list[dict]:
    """Look-alikes that hold no credential: {kind, path, text}."""
    rng = random.Random(seed)
    sha = lambda: _r(rng, HEX, 40)  # noqa: E731
    cases = {
        "placeholder": [
            ('config.py', 'API_KEY = "your-api-key-here"\n'),
            ('config.py', 'OPENAI_API_KEY = "sk-..."\n'),
            ('.env', "GITHUB_TOKEN=<your-token>\n"),
            ('.env', "DB_PASSWORD=changeme\n"),
            ('values.yaml', "password: ${DB_PASSWORD}\n"),
            ('settings.json', '{"api_key": "{{ api_key }}"}\n'),
            ('app.js', "const token = process.env.API_TOKEN;\n"),
            ('app.py', 'password = os.environ["DB_PASSWORD"]\n'),
            ('app.py', 'token = os.getenv("TOKEN")\n'),
            ('config.ini', "secret_key = xxxxxxxxxxxxxxxx\n"),
            ('README.md', "export AWS_SECRET_ACCESS_KEY=<secret>\n"),
            ('docker-compose.yml', "environment:\n  - POSTGRES_PASSWORD=${POSTGRES_PASSWORD}\n"),
            ('app.py', 'API_KEY = "INSERT_YOUR_KEY"\n'),
            ('main.go', 'token := cfg.Token\n'),
            ('app.py', 'password = getpass.getpass("Password: ")\n'),
            ('app.py', 'self.secret = secret\n'),
            ('app.ts', "const apiKey: string = config.get('apiKey');\n"),
            ('settings.py', 'SECRET_KEY = "django-insecure-' + "*" * 20 + '"\n'),
            ('.env.example', "STRIPE_SECRET_KEY=sk_test_xxxxxxxxxxxxxxxxxxxxxxxx\n"),
            ('docs.md', "AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\n"),
            ('docs.md', "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n"),
            ('db.py', 'url = "postgresql://user:password@localhost/db"\n'),
            ('db.py', 'url = f"postgresql://{user}:{password}@{host}/db"\n'),
        ],
        "hash_or_id": [
            ('pkg.py', f'SHA256 = "{_r(rng, HEX, 64)}"\n'),
            ('build.py', f'commit = "{sha()}"\n'),
            ('app.py', f'request_id = "{uuid.UUID(int=rng.getrandbits(128))}"\n'),
            ('app.json', '{"id": "' + str(uuid.UUID(int=rng.getrandbits(128))) + '"}\n'),
            ('cache.py', f'token_hash = "{_r(rng, HEX, 64)}"\n'),
            ('keys.py', f'key_id = "{_r(rng, HEX, 16)}"\n'),
            ('etag.py', f'ETAG = "{_r(rng, HEX, 32)}"\n'),
            ('gpg.txt', f"fingerprint: {_r(rng, HEX.upper(), 40)}\n"),
            ('checksums.txt', f"{_r(rng, HEX, 64)}  dist/app.tar.gz\n"),
        ],
        "lockfile": [
            ('package-lock.json', '"integrity": "sha512-' + _r(rng, B64, 86) + '=="\n'),
            ('yarn.lock', f'  resolved "https://registry.yarnpkg.com/x/-/x-1.0.0.tgz#{sha()}"\n'),
            ('go.sum', f"github.com/x/y v1.2.3 h1:{_r(rng, B64, 43)}=\n"),
            ('poetry.lock', f'{{file = "x.whl", hash = "sha256:{_r(rng, HEX, 64)}"}}\n'),
            ('Cargo.lock', f'checksum = "{_r(rng, HEX, 64)}"\n'),
        ],
        "test_fixture": [
            ('tests/test_auth.py', 'def test_login():\n    assert login("alice", "password")\n'),
            ('tests/test_api.py', 'TOKEN = "test-token"\n'),
            ('tests/test_api.py', 'headers = {"Authorization": "Bearer token"}\n'),
            ('spec/user_spec.rb', 'user = User.new(password: "secret")\n'),
            ('tests/test_jwt.py', 'bad = "not.a.jwt"\n'),
            ('test/auth.test.js', "expect(hash('hunter2')).not.toBe('hunter2');\n"),
        ],
        "base64_data": [
            ('icons.py', 'ICON = "data:image/png;base64,' + _r(rng, B64, 200) + '"\n'),
            ('blob.js', "const wasm = '" + _r(rng, B64, 300) + "';\n"),
            ('font.css', "src: url(data:font/woff2;base64," + _r(rng, B64, 240) + ");\n"),
            ('cert.py', 'CA = """-----BEGIN CERTIFICATE-----\n' + _r(rng, B64, 64)
             + '\n-----END CERTIFICATE-----"""\n'),
            ('id_rsa.pub', "ssh-rsa " + _r(rng, B64, 372) + " user@host\n"),
            ('pubkey.pem', "-----BEGIN PUBLIC KEY-----\n" + _r(rng, B64, 64)
             + "\n-----END PUBLIC KEY-----\n"),
        ],
        "look_alike": [
            ('app.py', 'prefix = "ghp_"\n'),
            ('app.py', 'name = "AKIA"  # prefix of AWS key ids\n'),
            ('tok.py', f'x = "ghp_{_r(rng, ALNUM, 12)}"\n'),
            ('docs.md', "Stripe keys start with `sk_live_` or `sk_test_`.\n"),
            ('model.py', "max_tokens = 4096\ntokenizer = AutoTokenizer.from_pretrained(name)\n"),
            ('auth.py', 'PASSWORD_FIELD = "password"\nTOKEN_URL = "https://x.io/oauth/token"\n'),
            ('auth.py', 'author = "Jane Doe"\n'),
            ('keys.py', 'primary_key = "user_id"\nsort_key = "created_at"\n'),
            ('css.css', ".token-input { color: #fff; }\n"),
            ('ver.py', '__version__ = "1.2.3"\npassword_min_length = 12\n'),
            ('urls.py', 'LOGIN = "https://example.com/login?next=/account"\n'),
            ('i18n.json', '{"password": "Password", "forgot_password": "Forgot password?"}\n'),
        ],
    }
    out = []
    for kind, items in cases.items():
        for path, text in items:
            out.append({"kind": kind, "path": path, "text": text})
    return out
