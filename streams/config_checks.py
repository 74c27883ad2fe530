"""The configuration checks one field cannot make alone, run after the schema's conversion.

A band's order, a time zone, a rule's scope and window, names used twice, a sink's rule,
a token's hash or environment variable, origins, TLS file pairs, and ``[kafka]`` with the
``CALLCOST_KAFKA_*`` environment over it. Each check raises the ``file:line: key:
message`` error of :class:`~callcost.streams.config_errors.Where` and returns plain
values; :mod:`callcost.streams.config` builds the settings from them. Pure: stdlib only
(it reads the environment mapping it is given and tests that named files exist).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Mapping
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from callcost.errors import ConfigError
from callcost.streams.config_errors import KeyPath, Where
from callcost.streams.config_schema import (
    GatewayTable,
    KafkaTable,
    RatesTable,
    RuleTable,
    SinkTable,
    TokenTable,
    given,
)
from callcost.streams.vocabulary import ALERT_STATES, SCOPES, parse_window

_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
#: a token: characters that may travel in an HTTP header and a websocket subprotocol
_TOKEN_RE = re.compile(r"[A-Za-z0-9._~-]{16,512}")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_SHA256_RE = re.compile(r"[0-9a-fA-F]{64}")
_ORIGIN_RE = re.compile(r"https?://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?")
_NAMES = "must be 1-64 chars of A-Z a-z 0-9 . _ -"


def _low_below_high(where: Where, path: KeyPath, band: tuple[float, float], what: str) -> None:
    if not band[0] < band[1]:
        raise where.fail(path, f"{what}low must be below high, not {where.raw(path)!r}")


def check_rates(where: Where, table: RatesTable, path: KeyPath) -> None:
    """``[defaults]`` or ``[centres.ID]``: a known time zone, a band low below high."""
    if isinstance(table.timezone, str):
        try:
            ZoneInfo(table.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise where.fail((*path, "timezone"), f"unknown time zone {table.timezone!r}") from None
    if isinstance(table.band, tuple):
        _low_below_high(where, (*path, "band"), table.band, "")


def check_centre_id(where: Where, cid: str) -> None:
    if not _NAME_RE.match(cid):
        raise where.fail(("centres", cid), f"centre id {cid!r} {_NAMES}")


def rule_window(where: Where, table: RuleTable, index: int) -> str:
    """The checks of one ``[[rules]]`` table; its window's name."""
    what = f"rule {table.name!r}: "
    if table.scope not in SCOPES:
        raise where.fail(
            ("rules", index, "scope"),
            f"{what}unknown scope {table.scope!r} (one of {', '.join(SCOPES)})",
        )
    try:
        window = parse_window(table.window).name
    except ValueError as exc:
        raise where.fail(("rules", index, "window"), f"{what}{exc}") from None
    if isinstance(table.band, tuple):
        _low_below_high(where, ("rules", index, "band"), table.band, what)
    return window


def check_rule_names(where: Where, names: list[str]) -> None:
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            raise where.fail(("rules", i, "name"), f"rule name {name!r} is used twice")
        seen.add(name)


def stream_windows(where: Where, windows: list[Any]) -> tuple[str, ...]:
    """``stream.windows``: each a window, none twice."""
    names = []
    for w in windows:
        try:
            names.append(parse_window(w).name)
        except ValueError as exc:
            raise where.fail(("stream", "windows"), str(exc)) from None
    if len(set(names)) != len(names):
        raise where.fail(("stream", "windows"), f"a window is listed twice in {windows!r}")
    return tuple(names)


def check_sink(where: Where, table: SinkTable, index: int, rules: list[str]) -> None:
    """One ``[[sinks]]`` table: an http(s) URL, names, and filters that can match."""
    path: KeyPath = ("sinks", index)
    url = table.url
    if not url.startswith(("http://", "https://")) or len(url.split("/")[2]) == 0:
        raise where.fail((*path, "url"), "must be an http:// or https:// URL")
    kw = given(table)
    for key in ("name", "centre"):
        if key in kw and not _NAME_RE.match(kw[key]):
            raise where.fail((*path, key), f"{kw[key]!r} {_NAMES}")
    if "scope" in kw and kw["scope"] not in SCOPES:
        raise where.fail(
            (*path, "scope"), f"unknown scope {kw['scope']!r} (one of {', '.join(SCOPES)})"
        )
    if "state" in kw and kw["state"] not in ALERT_STATES:
        raise where.fail((*path, "state"), f"must be 'firing' or 'resolved', not {kw['state']!r}")
    if "rule" in kw and kw["rule"] not in rules:
        raise where.fail((*path, "rule"), f"no rule {kw['rule']!r} (rules: {', '.join(rules)})")


def check_sink_ids(where: Where, ids: list[tuple[str, bool]]) -> None:
    """Sinks by (id, named): no two alike."""
    seen: dict[str, int] = {}
    for i, (sink_id, named) in enumerate(ids):
        if sink_id in seen:
            raise where.fail(
                ("sinks", i, "name" if named else "url"),
                f"sink {sink_id!r} is the same as sinks[{seen[sink_id]}]"
                + ("" if named else "; give each sink with this URL a name"),
            )
        seen[sink_id] = i


# -- [gateway] ---------------------------------------------------------------------------


def check_limits(where: Where, table: GatewayTable, soft: int, hard: int) -> None:
    """The limits block: ``soft`` and ``hard`` are the effective limits."""
    if soft > hard:
        key = "soft_limit" if isinstance(table.soft_limit, int) else "hard_limit"
        raise where.fail(
            ("gateway", key), f"soft_limit ({soft}) must not be above hard_limit ({hard})"
        )


def token_hash(
    where: Where, table: TokenTable, index: int, environ: Mapping[str, str], roles: tuple[str, ...]
) -> tuple[bytes, str | None]:
    """One ``[[gateway.tokens]]`` table: its token's SHA-256 and the variable it came from."""
    path: KeyPath = ("gateway", "tokens", index)
    name = table.name
    if not _NAME_RE.match(name):
        raise where.fail((*path, "name"), f"{name!r} {_NAMES}")
    if table.role not in roles:
        raise where.fail(
            (*path, "role"),
            f"token {name!r}: unknown role {table.role!r} (one of {', '.join(roles)})",
        )
    has_sha = isinstance(table.sha256, str)
    if has_sha == isinstance(table.env, str):
        raise where.fail(
            (*path, "sha256") if has_sha else path,
            f"token {name!r}: give exactly one of sha256 (the token's SHA-256 in hex) and "
            "env (the environment variable that holds the token)",
        )
    if isinstance(table.sha256, str):
        if not _SHA256_RE.fullmatch(table.sha256):
            raise where.fail(
                (*path, "sha256"),
                f"token {name!r}: must be 64 hex digits (a SHA-256), "
                f"not {len(table.sha256)} characters",
            )
        return bytes.fromhex(table.sha256), None
    var = str(table.env)
    if not _ENV_NAME_RE.fullmatch(var):
        raise where.fail((*path, "env"), f"token {name!r}: {var!r} is not a variable name")
    value = environ.get(var)
    if value is None or value == "":
        state = "not set" if value is None else "empty"
        raise where.fail((*path, "env"), f"token {name!r}: environment variable {var} is {state}")
    if not _TOKEN_RE.fullmatch(value):
        # the message never shows the value: it is a secret
        raise where.fail(
            (*path, "env"),
            f"token {name!r}: environment variable {var} must hold 16-512 characters "
            "of A-Z a-z 0-9 . _ ~ - (make one with python3 -c "
            "'import secrets; print(secrets.token_urlsafe(32))')",
        )
    return hashlib.sha256(value.encode()).digest(), var


def check_token_twins(where: Where, tokens: list[tuple[str, bytes, bool]]) -> None:
    """Tokens by (name, digest, from env): no name and no token twice."""
    names: dict[str, int] = {}
    digests: dict[bytes, int] = {}
    for i, (name, digest, from_env) in enumerate(tokens):
        if name in names:
            raise where.fail(
                ("gateway", "tokens", i, "name"),
                f"token name {name!r} is used by tokens[{names[name]}] too",
            )
        names[name] = i
        if digest in digests:
            raise where.fail(
                ("gateway", "tokens", i, "env" if from_env else "sha256"),
                f"token {name!r} is the same token as tokens[{digests[digest]}]; give each its own",
            )
        digests[digest] = i


def origins(where: Where, raw: list[Any]) -> tuple[str, ...]:
    """``gateway.origins``: each ``*`` or ``scheme://host[:port]``, kept in lower case."""
    kept: list[str] = []
    for origin in raw:
        if origin == "*":
            kept.append(origin)
            continue
        if not isinstance(origin, str) or not _ORIGIN_RE.fullmatch(origin):
            raise where.fail(
                ("gateway", "origins"),
                f"{origin!r} is not an origin like 'https://wall.example.com' or "
                "'http://10.0.0.5:8080' (scheme, host, optional port; no path) nor '*'",
            )
        kept.append(origin.lower())
    return tuple(kept)


def _beside(where: Where, name: str) -> str:
    """A relative path in the file is taken from the file's folder."""
    if not os.path.isabs(name) and not where.source.startswith("<"):
        return os.path.join(os.path.dirname(os.path.abspath(where.source)), name)
    return name


def tls_files(where: Where, table: GatewayTable) -> dict[str, str]:
    """``tls_cert`` and ``tls_key``: both or neither, each an existing file."""
    paths = {k: v for k, v in given(table).items() if k in ("tls_cert", "tls_key")}
    if not paths:
        return {}
    for key in ("tls_cert", "tls_key"):
        if key not in paths:
            other = "tls_key" if key == "tls_cert" else "tls_cert"
            raise where.fail(
                ("gateway", other), f"TLS needs both tls_cert and tls_key; {key} is missing"
            )
    out = {}
    for key, value in paths.items():
        name = _beside(where, value)
        if not os.path.isfile(name):
            raise where.fail(("gateway", key), f"no such file {name!r}")
        out[key] = name
    return out


# -- [kafka] -----------------------------------------------------------------------------


def kafka(
    where: Where,
    table: KafkaTable,
    environ: Mapping[str, str],
    *,
    env_keys: Mapping[str, str],
    password_env: str,
    allowed: Mapping[str, tuple[str, ...]],
) -> dict[str, Any]:
    """``[kafka]``, then the variables of ``env_keys`` (variable -> key) over it: the
    values of the settings; an error names the file, line and key, or the variable.

    ``allowed`` holds the values ``security_protocol`` and ``sasl_mechanism`` may take;
    with SASL, the password is read from ``password_env`` alone."""
    values: dict[str, Any] = {}
    #: where each value came from, to name it in an error
    origin: dict[str, Callable[[str], ConfigError]] = {}
    for key, raw in given(table).items():

        def at_key(message: str, path: KeyPath = ("kafka", key)) -> ConfigError:
            return where.fail(path, message)

        values[key] = _kafka_value(where, key, raw, at_key, allowed, in_file=True)
        origin[key] = at_key
    for var, key in env_keys.items():
        text = environ.get(var, "").strip()
        if not text:
            continue

        def at_var(message: str, var: str = var) -> ConfigError:
            return ConfigError(f"{var}: {message}")

        values[key] = _kafka_value(where, key, text, at_var, allowed, in_file=False)
        origin[key] = at_var
    protocol = values.get("security_protocol", "PLAINTEXT")
    uses_sasl = protocol in ("SASL_PLAINTEXT", "SASL_SSL")
    uses_ssl = protocol in ("SSL", "SASL_SSL")
    if uses_sasl and not values.get("sasl_username"):
        raise origin["security_protocol"](
            f"{protocol} needs a user name: set kafka.sasl_username or CALLCOST_KAFKA_SASL_USERNAME"
        )
    for key in ("sasl_mechanism", "sasl_username"):
        if key in values and not uses_sasl:
            raise origin[key](
                f"is set but security_protocol is {protocol}: SASL needs SASL_PLAINTEXT or SASL_SSL"
            )
    for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname"):
        if key in values and not uses_ssl:
            raise origin[key](
                f"is set but security_protocol is {protocol}: TLS needs SSL or SASL_SSL"
            )
    if values.get("ssl_keyfile") and not values.get("ssl_certfile"):
        raise origin["ssl_keyfile"]("a private key needs its certificate (ssl_certfile)")
    if uses_sasl:
        values["sasl_password"] = environ.get(password_env) or None
    return values


def _kafka_value(
    where: Where,
    key: str,
    raw: Any,
    fail: Callable[[str], ConfigError],
    allowed: Mapping[str, tuple[str, ...]],
    *,
    in_file: bool,
) -> Any:
    """One [kafka] value, from the file (converted) or the environment (text)."""
    if key == "ssl_check_hostname":
        if isinstance(raw, bool):
            return raw
        if raw.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return raw.lower() in ("1", "true", "yes", "on")
        raise fail(f"must be true or false, not {raw!r}")
    if not raw.strip():
        raise fail(f"must be a non-empty string, not {raw!r}")
    if key in allowed:
        if raw.upper() not in allowed[key]:
            names = ", ".join(allowed[key])
            raise fail(f"unknown {key.replace('_', ' ')} {raw!r} (one of {names})")
        return raw.upper()
    if key == "sasl_username":
        return raw
    name = os.path.expanduser(raw)  # a file: ssl_cafile, ssl_certfile, ssl_keyfile
    name = os.path.abspath(_beside(where, name) if in_file else name)
    if not os.path.isfile(name):
        raise fail(f"no such file {name!r}")
    return name
