"""Credential formats that providers document, one rule a line: each token is recognised by
its own shape (a fixed prefix, a checksum-bearing layout), wherever it stands and whatever
the name it is assigned to.

A rule is ``(vendor, kind, pattern[, prefilter])``: ``vendor`` names the provider (the test
suite and the benchmark report recall per vendor), ``kind`` the redaction kind it counts
under (:data:`operators.pii.KINDS`), ``pattern`` a Python regex whose group 1, if any, is
the part to redact (else the whole match), ``prefilter`` an RE2 pattern that every match
contains, for a pattern that starts with a character class (RE2 scans for those slowly).
Patterns must stay RE2-compatible apart from lookarounds (:func:`operators.pii._re2` strips
those for the batch prefilter); each has anchors (:data:`ANCHORS`, or its literal prefix),
literals one of which every match holds, so that a text is searched only for the rules
whose anchors it contains.

Formats not in this table (credentials with no distinguishing shape: Twilio auth tokens,
Datadog keys, Heroku's legacy UUID keys, passwords) are found by the name they are assigned
to (:mod:`operators.secret_assign`).

Sources: each provider's documentation of its token format (GitHub's "About authentication
to GitHub" and token-format blog post, GitLab's "Token overview", Slack's "Token types",
Stripe's "API keys", AWS IAM's "Unique identifiers" (key id prefixes), Google Cloud's "API
keys" and OAuth client docs, Hugging Face's "User access tokens", Anthropic's and OpenAI's
API-key docs, DigitalOcean's "Personal access tokens", Grafana Cloud's "Access policies",
HashiCorp Vault's "Tokens" (service/batch token prefixes), New Relic's "API keys",
Databricks' "Personal access tokens", Shopify's "Access tokens", npm's "About access
tokens", PyPI's "API tokens" (macaroon prefix), Sentry's "Auth tokens" and DSN docs,
Discord's developer docs, Twitter/X's "Bearer tokens", Microsoft Entra's client-secret
format, Azure Storage connection strings, SendGrid, Mailchimp, Mailgun, Telegram's Bot API,
Atlassian, Linear, Postman, Doppler, Pulumi, Square, Dropbox, Meta, Alibaba Cloud, age,
Supabase, PlanetScale, Replicate, Groq, Perplexity, xAI, Docker Hub, Contentful, Notion,
Airtable, Netlify, Render, Buildkite, CircleCI, Fly.io, Mapbox, Figma, Frame.io, Typeform,
LangSmith, Pinecone, Heroku, Bitbucket, Terraform Cloud).
"""

from __future__ import annotations

import re
from typing import NamedTuple

#: a token must not continue a longer run of token characters on either side (``=``
#: may precede one: ``?token=...``, ``KEY=...``)
_B = r"(?<![A-Za-z0-9_+/-])"
_E = r"(?![A-Za-z0-9_+/=-])"

RULES: list[tuple] = [
    # cloud providers
    ("aws", "aws_key", _B + r"((?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z2-7]{16})" + _E),
    ("google_api_key", "api_key", _B + r"(AIza[0-9A-Za-z_-]{35})" + _E),
    ("google_oauth", "api_key", _B + r"(GOCSPX-[A-Za-z0-9_-]{28})" + _E),
    ("google_oauth", "api_key", _B + r"(ya29\.[0-9A-Za-z_-]{30,})" + _E),
    ("google_oauth", "api_key", _B + r"(1//0[0-9A-Za-z_-]{40,})" + _E),
    ("azure_client_secret", "api_key",
     _B + r"([A-Za-z0-9_~.]{3}[0-9]Q~[A-Za-z0-9_~.-]{31,34})" + _E, r"[0-9]Q~[A-Za-z0-9_~.-]{8}"),
    ("azure_storage", "api_key",
     r"(?:AccountKey|SharedAccessKey|SharedAccessSignature)\s*=\s*([A-Za-z0-9+/%]{20,}={0,2})"),
    ("digitalocean", "api_key", _B + r"(do[opr]_v1_[a-f0-9]{64})" + _E),
    ("alibaba", "aws_key", _B + r"(LTAI[A-Za-z0-9]{12,20})" + _E),
    ("databricks", "api_key", _B + r"(dapi[a-f0-9]{32}(?:-[0-9])?)" + _E),
    ("databricks", "api_key", _B + r"(dose[a-f0-9]{32}(?:-[0-9])?)" + _E),
    ("fly", "api_key", _B + r"(fo1_[A-Za-z0-9_-]{43})" + _E),
    ("fly", "api_key", r"(FlyV1 fm[12][a-z]?_[A-Za-z0-9+/=,_-]{40,})"),
    ("heroku", "api_key", _B + r"(HRKU-[A-Za-z0-9_-]{60})" + _E),
    ("render", "api_key", _B + r"(rnd_[A-Za-z0-9]{32})" + _E),
    ("netlify", "api_key", _B + r"(nfp_[A-Za-z0-9]{36})" + _E),
    ("supabase", "api_key", _B + r"(sbp_[a-f0-9]{40})" + _E),
    ("supabase", "api_key", _B + r"(sb_secret_[A-Za-z0-9_-]{30,})" + _E),
    ("planetscale", "api_key", _B + r"(pscale_(?:tkn|pw|oauth)_[A-Za-z0-9_.=-]{32,64})" + _E),
    ("terraform_cloud", "api_key",
     _B + r"([A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9_=-]{60,70})" + _E),
    ("pulumi", "api_key", _B + r"(pul-[a-f0-9]{40})" + _E),
    ("doppler", "api_key",
     _B + r"(dp\.(?:pt|st|sa|ct|scim|audit)\.[A-Za-z0-9]{40,44})" + _E),
    ("vault", "api_key", _B + r"(hv[sb]\.[A-Za-z0-9_-]{90,})" + _E),
    # source hosting and CI
    ("github", "github_token", _B + r"(gh[pousr]_[A-Za-z0-9]{36,251})" + _E),
    ("github", "github_token", _B + r"(github_pat_[A-Za-z0-9_]{82})" + _E),
    ("gitlab", "gitlab_token",
     _B + r"(gl(?:pat|dt|rt|ptt|cbt|imt|soat|ffct|oas|agent|wt|ft)-[A-Za-z0-9_.-]{20,})" + _E),
    ("gitlab", "gitlab_token", _B + r"(GR1348941[A-Za-z0-9_-]{20,})" + _E),
    ("bitbucket", "api_key", _B + r"(ATBB[A-Za-z0-9_=.-]{32,})" + _E),
    ("atlassian", "api_key", _B + r"(ATATT3[A-Za-z0-9_=-]{150,})" + _E),
    ("buildkite", "api_key", _B + r"(bkua_[a-f0-9]{40})" + _E),
    ("circleci", "api_key", _B + r"(CCIPAT_[A-Za-z0-9]{22}_[a-f0-9]{40})" + _E),
    ("docker_hub", "api_key", _B + r"(dckr_pat_[A-Za-z0-9_-]{27,})" + _E),
    ("npm", "api_key", _B + r"(npm_[A-Za-z0-9]{36})" + _E),
    ("pypi", "api_key", _B + r"(pypi-AgE[A-Za-z0-9_-]{50,})" + _E),
    # messaging and collaboration
    ("slack", "slack_token", _B + r"(xox[abposer]-(?:[0-9]+-)?[A-Za-z0-9-]{10,})" + _E),
    ("slack", "slack_token", _B + r"(xoxe\.xox[bp]-[0-9]-[A-Za-z0-9-]{40,})" + _E),
    ("slack", "slack_token", _B + r"(xoxe-[0-9]-[A-Za-z0-9-]{40,})" + _E),
    ("slack", "slack_token", _B + r"(xapp-[0-9]-[A-Z0-9]+-[0-9]+-[a-f0-9]+)" + _E),
    ("slack", "slack_token",
     r"hooks\.slack\.com/(?:services|workflows|triggers)/(T[A-Z0-9]+/[A-Za-z0-9/]{10,})"),
    ("discord", "api_key",
     _B + r"([MNO][A-Za-z0-9_-]{23,25}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,38})" + _E,
     r"\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27}"),
    ("discord", "api_key",
     r"discord(?:app)?\.com/api/webhooks/[0-9]+/([A-Za-z0-9_-]{60,70})"),
    ("telegram", "api_key", _B + r"([0-9]{8,10}:AA[A-Za-z0-9_-]{33})" + _E,
     r":AA[A-Za-z0-9_-]{8}"),
    ("twitter", "api_key", _B + r"(AAAAAAAAAAAAAAAAAAAAA[A-Za-z0-9%]{30,})" + _E),
    ("meta", "api_key", _B + r"(EAA[A-Za-z0-9]{90,})" + _E),
    ("linear", "api_key", _B + r"(lin_api_[A-Za-z0-9]{40})" + _E),
    ("notion", "api_key", _B + r"(secret_[A-Za-z0-9]{43})" + _E),
    ("notion", "api_key", _B + r"(ntn_[0-9]{11}[A-Za-z0-9]{35})" + _E),
    ("airtable", "api_key", _B + r"(pat[A-Za-z0-9]{14}\.[a-f0-9]{64})" + _E),
    ("figma", "api_key", _B + r"(figd_[A-Za-z0-9_-]{40})" + _E),
    ("frameio", "api_key", _B + r"(fio-u-[A-Za-z0-9_=-]{64})" + _E),
    ("typeform", "api_key", _B + r"(tfp_[A-Za-z0-9_.-]{40,})" + _E),
    ("contentful", "api_key", _B + r"(CFPAT-[A-Za-z0-9_-]{43})" + _E),
    ("postman", "api_key", _B + r"(PMAK-[a-f0-9]{24}-[a-f0-9]{34})" + _E),
    # payments and commerce
    ("stripe", "api_key", _B + r"((?:sk|rk)_(?:live|test)_[0-9A-Za-z]{10,247})" + _E),
    ("stripe", "api_key", _B + r"(whsec_[A-Za-z0-9]{32,})" + _E),
    ("square", "api_key", _B + r"(EAAA[A-Za-z0-9_-]{60})" + _E),
    ("square", "api_key", _B + r"(sq0(?:atp|csp)-[A-Za-z0-9_-]{22,43})" + _E),
    ("shopify", "api_key", _B + r"(shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32})" + _E),
    # e-mail and SMS
    ("sendgrid", "api_key", _B + r"(SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43})" + _E),
    ("mailchimp", "api_key", _B + r"([0-9a-f]{32}-us[0-9]{1,2})" + _E, r"-us[0-9]"),
    ("mailgun", "api_key", _B + r"(key-[0-9a-f]{32})" + _E),
    ("twilio", "api_key", _B + r"(SK[0-9a-fA-F]{32})" + _E),
    # AI platforms
    ("anthropic", "api_key", _B + r"(sk-ant-(?:api|admin|sid)[0-9]{2}-[A-Za-z0-9_-]{80,110})" + _E),
    ("openai", "api_key",
     _B + r"(sk-(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_-]{20,}T3BlbkFJ[A-Za-z0-9_-]{20,})"
     + _E),
    ("openai", "api_key", _B + r"(sk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{40,})" + _E),
    ("huggingface", "api_key", _B + r"((?:hf_|api_org_)[A-Za-z]{34})" + _E),
    ("replicate", "api_key", _B + r"(r8_[A-Za-z0-9]{37})" + _E),
    ("groq", "api_key", _B + r"(gsk_[A-Za-z0-9]{52})" + _E),
    ("perplexity", "api_key", _B + r"(pplx-[A-Za-z0-9]{48})" + _E),
    ("xai", "api_key", _B + r"(xai-[A-Za-z0-9]{80})" + _E),
    ("langsmith", "api_key", _B + r"(lsv2_(?:pt|sk)_[a-f0-9]{32}_[a-f0-9]{10})" + _E),
    ("pinecone", "api_key", _B + r"(pcsk_[A-Za-z0-9_]{50,})" + _E),
    # observability
    ("sentry", "api_key", _B + r"(sntrys_eyJ[A-Za-z0-9+/=_-]{60,})" + _E),
    ("sentry", "api_key", _B + r"(sntryu_[a-f0-9]{64})" + _E),
    ("sentry", "api_key", r"(?<=://)([a-f0-9]{32})(?::[a-f0-9]{32})?@[a-z0-9.-]*sentry\.io/"),
    ("grafana", "api_key", _B + r"(glc_[A-Za-z0-9+/]{32,400}={0,2})" + _E),
    ("grafana", "api_key", _B + r"(glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8})" + _E),
    ("new_relic", "api_key", _B + r"(NR(?:AK|II|JS|AA)-[A-Za-z0-9_-]{19,32})" + _E),
    ("new_relic", "api_key", _B + r"([a-f0-9]{36}NRAL)" + _E, r"NRAL"),
    ("mapbox", "api_key", _B + r"(sk\.eyJ[A-Za-z0-9_-]{50,}\.[A-Za-z0-9_-]{20,})" + _E),
    # formats of many issuers
    ("jwt", "secret",
     _B + r"(eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})" + _E),
    ("age", "private_key", _B + r"(AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58})"),
]

#: credentials their issuers publish for local emulators and documentation, which every
#: copy of the emulator's docs and tests holds: not secrets (Azurite's storage account key)
PUBLIC_VALUES = frozenset({
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==",
})

#: a literal every match holds, for rules whose pattern does not start with one of 3+
#: characters (then the literal prefix is the anchor); a rule runs on a text only if its
#: anchor (any of them, for a tuple) is in it
ANCHORS: dict[str, tuple[str, ...]] = {
    "aws": ("AKIA", "ASIA", "ABIA", "ACCA", "A3T"), "azure_client_secret": ("Q~",),
    "azure_storage": ("AccountKey", "SharedAccess"), "doppler": ("dp.",),
    "vault": ("hvs.", "hvb."), "github": ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    "gitlab": ("gl", "GR1348941"), "terraform_cloud": (".atlasv1.",),
    "telegram": (":AA",), "mailchimp": ("-us",), "new_relic": ("NR",),
    "sentry": ("sntry", "sentry.io"),
    "stripe": ("sk_", "rk_", "whsec_"), "square": ("EAAA", "sq0"), "shopify": ("shp",),
    "openai": ("sk-",), "huggingface": ("hf_", "api_org_"), "replicate": ("r8_",),
    "jwt": ("eyJ",), "grafana": ("glc_", "glsa_"), "databricks": ("dapi", "dose"),
    "supabase": ("sb",), "slack": ("xox", "xapp-", "hooks.slack.com"), "meta": ("EAA",),
    "notion": ("secret_", "ntn_"), "airtable": ("pat",), "discord": None,
    "digitalocean": ("_v1_",), "twilio": ("SK",),
}


class Rule(NamedTuple):
    vendor: str
    kind: str
    anchors: tuple[str, ...] | None  # None: no literal; the rule runs on every candidate
    regex: re.Pattern
    bounded: bool  # the match must not continue a run of token characters to its left
    prefilter: str | None = None


_LITERAL = re.compile(r"\(?((?:\\[.+*?$^|(){}\[\]/-]|[A-Za-z0-9_~:,=/ -])+)")


def _rule(vendor: str, kind: str, pattern: str, prefilter: str | None = None) -> Rule:
    bounded = pattern.startswith(_B)
    core = pattern[len(_B):] if bounded else pattern
    anchors = ANCHORS.get(vendor, ())
    if anchors == ():
        m = _LITERAL.match(core)
        lit = re.sub(r"\\(.)", r"\1", m.group(1)) if m else ""
        if len(lit) < 3 or core[m.end():m.end() + 1] in ("?", "*", "{"):
            raise ValueError(f"secret format {vendor}: no anchor; add one to ANCHORS")
        anchors = (lit,)
    return Rule(vendor, kind, anchors, re.compile(core), bounded, prefilter)


RULE_LIST: list[Rule] = [_rule(*r) for r in RULES]
VENDORS = tuple(dict.fromkeys(r[0] for r in RULES))
#: characters a bounded token must not follow
BOUNDARY = re.compile(r"[A-Za-z0-9_+/-]")
