"""Scrub credentials from anything tased-batch writes, prints or submits.

Secrets reach a run in three shapes: storage options (at any depth, e.g.
``client_kwargs.aws_secret_access_key`` or ``headers.Authorization``), URLs whose query
string carries a signature or token (pre-signed S3 URLs, Azure SAS ``sig=``), and userinfo
in URLs (``https://user:pass@host``). :func:`scrub` removes all three from any JSON-like
value, so config.json, commit records, run reports, log lines and job entrypoints can be
passed through it just before they leave the process.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "***"

# Mapping keys whose values are credentials, compared lower-case with '-' as '_'.
SECRET_KEYS = frozenset(
    {
        "key",
        "secret",
        "token",
        "password",
        "passwd",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "session_token",
        "security_token",
        "access_key",
        "secret_key",
        "secret_access_key",
        "authorization",
        "proxy_authorization",
        "x_amz_security_token",
        "account_key",
        "sas_token",
        "credential",
        "credentials",
        "client_secret",
        "api_key",
        "apikey",
        "private_key",
        "connection_string",
        "cookie",
    }
)

# URL query parameters that sign or authorise a request (lower-case).
SECRET_QUERY = frozenset(
    {
        "x-amz-signature",
        "x-amz-security-token",
        "x-amz-credential",
        "signature",
        "sig",
        "token",
        "access_token",
        "x-goog-signature",
        "x-goog-credential",
        "awsaccesskeyid",
        "security-token",
        "code",
        "key",
        "api_key",
        "apikey",
        "password",
        "secret",
    }
)

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+?(?=[.,:;)\]]*(?:[\s\"'<>]|$))")


def is_secret_key(key: object) -> bool:
    return isinstance(key, str) and key.lower().replace("-", "_") in SECRET_KEYS


def scrub_url(url: str) -> str:
    """``url`` without userinfo and without signing query parameters (kept as ``***``)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        netloc = REDACTED + "@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in SECRET_QUERY for k, _ in pairs):
            query = urlencode([(k, REDACTED if k.lower() in SECRET_QUERY else v) for k, v in pairs], safe="*")
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def scrub_text(text: str) -> str:
    """Every URL inside free text (an error message, a command line) scrubbed."""
    if "://" not in text:
        return text
    return _URL.sub(lambda m: scrub_url(m.group(0)), text)


def scrub(value: Any) -> Any:
    """A copy of a JSON-like value with secrets removed at every depth.

    Mapping entries under a secret key are dropped; strings have their URLs scrubbed.
    """
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if not is_secret_key(k)}
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    if isinstance(value, str):
        return scrub_text(value)
    return value


def secret_values(options: Any) -> list[str]:
    """The credential strings inside storage options (for tests and log filters)."""
    found: list[str] = []
    if isinstance(options, dict):
        for k, v in options.items():
            if is_secret_key(k) and isinstance(v, str) and v:
                found.append(v)
            else:
                found.extend(secret_values(v))
    elif isinstance(options, (list, tuple)):
        for v in options:
            found.extend(secret_values(v))
    return found


def secret_paths(options: Any, prefix: str = "") -> list[str]:
    """Dotted paths of every credential key in storage options, at any depth (sorted)."""
    found: list[str] = []
    if isinstance(options, dict):
        for k, v in options.items():
            path = f"{prefix}{k}"
            if is_secret_key(k):
                found.append(path)
            else:
                found.extend(secret_paths(v, f"{path}."))
    elif isinstance(options, (list, tuple)):
        for i, v in enumerate(options):
            found.extend(secret_paths(v, f"{prefix}{i}."))
    return sorted(found)


def plain(text: str) -> Any:
    """User-derived text as a rich ``Text`` (never parsed as markup), secrets scrubbed."""
    from rich.text import Text

    return Text(scrub_text(str(text)))
