"""What an output file says about where its pixels came from (the GeoParquet `source_url` column).

Clay's published embeddings name each chip's source by an absolute URL (`s3://...`), so a row can be traced
back without knowing where the job ran. `public_source` gives that form for every kind of source a job reads:
a local path becomes absolute; a URL or a QGIS data source string (WMS, XYZ, WCS, a database raster) loses
its credentials (user:password@ in a URL, username=/password=/authcfg= keys, API keys, tokens and
signatures in a query string, custom HTTP headers), because an output file is shared and a secret written
into it cannot be taken back. `redact` does the same inside free text (error messages, log lines, progress
events, a logged command line), where a URL or a data source string is quoted among other words.
Standard library only: the QGIS process imports this too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from urllib.parse import quote, unquote

# Fetched rasters (clay_qgis.fetch) carry the layer's public source as this GDAL metadata item; a raster
# source uses it as source_url instead of the temporary file's path.
SOURCE_TAG = "CLAY_SOURCE_URL"

# Names of parameters whose value may be a secret (query strings, QGIS URIs, connection strings). Broad on
# purpose: dropping a harmless parameter from a provenance string costs little, writing a key costs a lot.
SECRET_NAME = re.compile(r"pass|secret|token|key|sig|auth|credential|session|cookie|user|login", re.IGNORECASE)
HEADER_PREFIX = "http-header:"  # QGIS's custom HTTP headers of a WMS/XYZ connection
KEPT_HEADERS = {"http-header:referer"}  # the Referer is sent to every server the layer talks to: not a secret
URL_START = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
VSI_PREFIX = re.compile(r"^(/vsi[a-z0-9_]+/)(.*)$", re.DOTALL)
DRIVER_PREFIX = re.compile(r"^([A-Za-z][A-Za-z0-9_]*:)(?=[A-Za-z][A-Za-z0-9+.-]*://)")  # WMS:https://...
CONNINFO_PAIR = re.compile(r"(\s*)([A-Za-z_][\w.-]*)\s*=\s*('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|\S*)")
# Characters left as they are when a changed url= value is written back into a QGIS data source string.
URI_VALUE_SAFE = ":/?=@!$'()*+,;~"

# Free text (redact): the user:password@ of a URL, also percent-encoded inside a QGIS url= value
# (https%3A%2F%2Fuser%3Apass%40host); the greedy run stops at the authority's last @.
TEXT_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^\s/?#'\"<>]*@")
TEXT_ENCODED_USERINFO = re.compile(
    r"([A-Za-z][A-Za-z0-9+.-]*%3A%2F%2F)(?:(?!%2F|%3F|%23)[^\s/?#'\"<>&])*%40", re.IGNORECASE
)
# A secret name=value pair that starts a query parameter, a URI key or a connection-string word: after ? & ;
# a space, a quote or a bracket (also %26 / %3F, percent-encoded), never after a path separator, so a local
# folder named token=1 stays as it is. Only secret names match: the value of another pair (url=...) is
# searched too. The value runs to the next separator (& or %26, ;, space, quote).
TEXT_PAIR = re.compile(
    r"(?:(?<=[?&;\s'\"(\[{,])|(?<=%26)|(?<=%3[Ff])|^)"
    rf"([\w.:-]*?(?:{SECRET_NAME.pattern})[\w.:-]*)(\s*=\s*|%3[Dd])"
    r"('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|(?:(?!%26)[^\s&'\"<>;])*)",
    re.IGNORECASE,
)
REDACTED = "***"


def public_source(source: str) -> str:
    """`source` as an output file may show it: an absolute path, or a URL / URI without credentials."""
    text = str(source).strip()
    if not text:
        return text
    if _is_url_like(text) or (_is_key_value(text) and not os.path.exists(text)):
        return strip_credentials(text)
    return os.path.abspath(text)


def shared_source(sources: Sequence[str]) -> str:
    """One source_url for chips read from several files: the one source they all are, else the folder (or
    URL prefix) they share, else all of them separated by ' ; '."""
    public = list(dict.fromkeys(public_source(s) for s in sources))
    if len(public) == 1:
        return public[0]
    if not any(_is_url_like(p) or _is_key_value(p) for p in public):
        try:
            return os.path.commonpath(public)
        except ValueError:  # different drives (Windows)
            return " ; ".join(public)
    prefix = os.path.commonprefix(public)
    folder = prefix[: prefix.rfind("/")] if "/" in prefix else ""
    scheme = URL_START.match(folder)
    if scheme and len(folder) > scheme.end():  # a real prefix (s3://bucket/tile), not just "s3://"
        return folder
    return " ; ".join(public)


def strip_credentials(source: str) -> str:
    """`source` (URL, /vsi path, GDAL connection string, QGIS data source string) without any secret in it."""
    text = str(source)
    vsi = VSI_PREFIX.match(text)
    if vsi:
        return vsi[1] + strip_credentials(vsi[2])
    driver = DRIVER_PREFIX.match(text)
    if driver:
        return driver[1] + _strip_url(text[driver.end() :])
    if URL_START.match(text):
        return _strip_url(text)
    if _is_conninfo(text):
        return _strip_conninfo(text)
    if "=" in text:
        return _strip_query(text, nested_urls=True)
    return text


def redact(text: str) -> str:
    """`text` (a message, a log line, a command line) with every credential in it replaced: user:password@
    goes from URLs, the values of secret parameters (password=, token=, api_key=, X-Amz-Signature=, ...)
    become ***. Everything else, local paths included, is left as it was."""
    text = str(text)
    if "@" not in text and "=" not in text and "%" not in text:
        return text  # nothing a secret could hide in: most messages
    text = TEXT_USERINFO.sub(r"\1", text)
    text = TEXT_ENCODED_USERINFO.sub(r"\1", text)
    return TEXT_PAIR.sub(_redact_pair, text)


def _redact_pair(match: re.Match) -> str:
    name, separator, value = match.groups()
    if not value or value == REDACTED or not _is_secret(name):
        return match[0]
    return f"{name}{separator}{REDACTED}"


def _is_url_like(text: str) -> bool:
    return bool(URL_START.match(text) or VSI_PREFIX.match(text) or DRIVER_PREFIX.match(text))


def _is_key_value(text: str) -> bool:
    return "=" in text and ("&" in text or _is_conninfo(text) or re.match(r"^[\w:-]+=", text) is not None)


def _is_conninfo(text: str) -> bool:
    """A libpq-style connection string: `dbname='x' host=h user='u' password='p' ...` (space separated)."""
    return "&" not in text and len(CONNINFO_PAIR.findall(text)) > 1 and re.search(r"\s\w+\s*=", text) is not None


def _is_secret(name: str) -> bool:
    lowered = unquote(name).strip().lower()
    if lowered.startswith(HEADER_PREFIX):
        return lowered not in KEPT_HEADERS
    return SECRET_NAME.search(lowered) is not None


def _strip_url(url: str) -> str:
    """A URL without user:password@ and without secret query parameters (API keys, tokens, signatures)."""
    scheme, rest = url.split("://", 1)
    authority_end = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    authority, tail = rest[:authority_end], rest[authority_end:]
    if "@" in authority:
        authority = authority.rsplit("@", 1)[1]
    fragment = ""
    if "#" in tail:
        tail, fragment = tail.split("#", 1)
        fragment = "#" + fragment
    if "?" in tail:
        path, query = tail.split("?", 1)
        query = _strip_query(query, nested_urls=False)
        tail = f"{path}?{query}" if query else path
    return f"{scheme}://{authority}{tail}{fragment}"


def _strip_query(query: str, *, nested_urls: bool) -> str:
    """`a=1&key=2&b` without its secret parameters; in a QGIS data source string (`nested_urls`) the url=
    value, itself a percent-encoded URL, is cleaned too."""
    kept = []
    for part in query.split("&"):
        name, has_value, value = part.partition("=")
        if has_value and _is_secret(name):
            continue
        if has_value and nested_urls and name.strip().lower() == "url":
            decoded = unquote(value)
            cleaned = strip_credentials(decoded)
            if cleaned != decoded:
                part = f"{name}={quote(cleaned, safe=URI_VALUE_SAFE)}"
        kept.append(part)
    return "&".join(kept)


def _strip_conninfo(text: str) -> str:
    def keep(match: re.Match) -> str:
        return "" if _is_secret(match[2]) else match[0]

    return CONNINFO_PAIR.sub(keep, text).strip()
