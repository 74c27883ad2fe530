"""Settings from TOML (SPEC section 2): one frozen object, checked once at start-up.

Every error names the file, the line and the key at fault, so that a bad configuration
stops start-up with something a person can act on::

    callcost.toml:14: centres.prg.timezone: unknown time zone 'Europe/Prag'

Pure module: standard library only.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from callcost.errors import ConfigError

SCOPES = ("centre", "queue", "channel", "direction")
DIRECTIONS = ("inbound", "outbound")
CHANNELS = ("voice", "chat", "email")

_WINDOW_RE = re.compile(r"^([1-9][0-9]{0,6})([smh])$")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000}


@dataclass(frozen=True, slots=True)
class Window:
    """A window: ``[T - length_ms, T)``, or ``today`` (``length_ms`` is None)."""

    name: str
    length_ms: int | None

    @property
    def is_today(self) -> bool:
        return self.length_ms is None


def parse_window(name: object) -> Window:
    """``"15m"`` -> Window("15m", 900000); ``"today"`` -> Window("today", None)."""
    if not isinstance(name, str):
        raise ValueError(f"window must be a string like '15m' or 'today', not {name!r}")
    if name == "today":
        return Window("today", None)
    m = _WINDOW_RE.match(name)
    if not m:
        raise ValueError(f"window {name!r} is not 'today' nor a length like '90s', '15m', '8h'")
    length_ms = int(m.group(1)) * _UNIT_MS[m.group(2)]
    if length_ms > 7 * 24 * 3_600_000:
        raise ValueError(f"window {name!r} is longer than 7 days")
    return Window(name, length_ms)


@dataclass(frozen=True, slots=True)
class Rates:
    """Cost rates of one centre (SPEC section 2)."""

    labour_per_hour: float = 24.0
    labour_per_hour_by_team: Mapping[str, float] = field(
        default_factory=lambda: MappingProxyType({})
    )
    seat_per_hour: float = 1.5
    fixed_per_hour: float = 60.0
    telephony_per_minute: Mapping[str, float] = field(
        default_factory=lambda: MappingProxyType({"inbound": 0.012, "outbound": 0.020})
    )
    billing_increment_s: int = 6
    timezone: str = "UTC"
    band: tuple[float, float] = (2.70, 5.60)
    currency: str = "USD"

    def labour_rate(self, team: str | None) -> float:
        if team is not None and team in self.labour_per_hour_by_team:
            return self.labour_per_hour_by_team[team]
        return self.labour_per_hour

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True, slots=True)
class Rule:
    """An alert rule (SPEC section 5). ``band`` None means the centre's band."""

    name: str
    scope: str
    window: str
    band: tuple[float, float] | None = None
    min_calls: int = 20
    hysteresis: float = 0.05
    for_s: int = 60

    def band_for(self, rates: Rates) -> tuple[float, float]:
        return self.band if self.band is not None else rates.band


DEFAULT_RULES = (
    Rule(name="centre-15m", scope="centre", window="15m"),
    Rule(name="queue-15m", scope="queue", window="15m"),
)


@dataclass(frozen=True, slots=True)
class StreamSettings:
    lateness_ms: int = 5000
    windows: tuple[str, ...] = ("15m", "1h", "today")
    #: live mode only: idle centres' watermarks follow the wall clock
    idle_advance: bool = False
    #: live worker: an event whose ts is further ahead of the wall clock is rejected
    #: (``future_ts``), so one bad clock cannot drag a centre's watermark into the future
    max_future_ms: int = 15 * 60_000
    #: how long event ids are remembered behind the watermark for duplicate detection
    dedup_ms: int = 3_600_000
    #: how long a call's join state is kept after its last event, behind the watermark
    call_ttl_ms: int = 4 * 3_600_000


@dataclass(frozen=True, slots=True)
class Sink:
    """A webhook sink for alerts (issue 4): where, which alerts, and how hard to try.

    The filters (``centre``, ``scope``, ``rule``, ``state``) are each optional: None
    takes every value. ``name`` names the sink in ``/metrics`` and in the delivery
    records of the control topic; without one the sink is known by a hash of its URL
    (:attr:`id`), so that the URL, often a secret itself, is never shown.
    """

    url: str
    centre: str | None = None
    scope: str | None = None
    rule: str | None = None
    state: str | None = None
    secret: str | None = None
    name: str | None = None
    #: one delivery attempt (connect, send, answer) gives up after this long
    timeout_s: float = 5.0
    #: attempts per alert message before it is abandoned (counted in /metrics)
    max_attempts: int = 6
    #: the first retry waits about this long, each next one twice as long (up to 60 s)
    backoff_s: float = 0.5
    #: messages waiting per sink; when full the oldest is dropped (and counted)
    queue_size: int = 1000
    #: at start, alerts never sent whose ``at`` is this much older than the start are
    #: not sent (a gateway down for a day does not blast a day of alerts)
    replay_horizon_s: float = 900.0

    @property
    def id(self) -> str:
        """``name``, or ``url-`` and 16 hex digits of the URL's SHA-256."""
        if self.name is not None:
            return self.name
        return "url-" + hashlib.sha256(self.url.encode()).hexdigest()[:16]


#: the roles of gateway tokens; what each may do is :data:`callcost.web.access.ROLES`
ROLES = ("wallboard", "supervisor", "admin", "metrics")


@dataclass(frozen=True, slots=True)
class AccessToken:
    """One ``[[gateway.tokens]]`` entry: a name for the logs, a role, and the SHA-256 of
    the token. The token itself is never in the file nor kept here: ``sha256`` gives its
    hash, or ``env`` names the environment variable that holds it (hashed at load)."""

    name: str
    role: str
    sha256: bytes = field(repr=False)
    #: the environment variable the token came from, if it did
    env: str | None = None


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    """``[gateway]``: what ``callcost gateway`` allows its clients (issue 6).

    Fields are grouped in blocks, one per concern, each parsed by its own method of the
    loader; keep a new concern in a block of its own.
    """

    # -- limits: abuse and slow clients (see README "Abuse and limits") -----------------
    #: the largest websocket message a client may send (bigger: close 1009)
    max_frame_bytes: int = 64 * 1024
    #: the largest HTTP request body (POST /api/alerts/ack, /api/snoozes; bigger: 413)
    max_request_bytes: int = 64 * 1024
    #: subscriptions per connection (more: ``too_many_subscriptions``)
    max_subscriptions: int = 64
    #: messages waiting for one client past which its figures updates are conflated
    soft_limit: int = 64
    #: messages waiting for one client past which it is disconnected (close 1013)
    hard_limit: int = 1024
    #: open websocket connections (more: the handshake is answered 503)
    max_connections: int = 10_000
    #: open TCP connections from one address, handshakes included; 0: no limit (the
    #: default, since clients behind a proxy or NAT share an address)
    max_connections_per_ip: int = 0
    #: client requests per second per connection, on average (token bucket)
    max_requests_per_s: float = 20.0
    #: requests a connection may send at once above the average; an excess request is
    #: answered ``rate_limited``; more than this many refused in a row close with 1008
    request_burst: int = 100
    #: keepalive: a ping this often, and no pong within ``ping_timeout_s`` closes (1011);
    #: ``ping_interval_s`` 0 disables keepalive
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0
    #: the opening handshake (HTTP request, head and body, and the upgrade) must end
    #: within this long: a slow sender (slowloris) is dropped
    open_timeout_s: float = 10.0
    #: a closing handshake the client does not answer is cut off after this long
    close_timeout_s: float = 10.0
    #: one message the client does not take (its TCP window stays full) for this long
    #: closes the connection (1013)
    send_timeout_s: float = 30.0
    #: high-water mark of the per-connection write buffer; pongs for a client's pings
    #: are not answered past four times this while it does not read
    write_buffer_bytes: int = 32 * 1024
    # -- end of limits ------------------------------------------------------------------

    # -- access: tokens, origins, TLS (see README "Security") ---------------------------
    #: who may use the gateway, with which role; none: open access, as before tokens
    #: (the gateway warns loudly at start)
    tokens: tuple[AccessToken, ...] = ()
    #: browser origins (``https://host[:port]``) allowed besides the gateway's own host,
    #: for websocket handshakes and POSTs that carry an ``Origin``; ``"*"``: any
    origins: tuple[str, ...] = ()
    #: PEM certificate chain and private key (paths, relative to the configuration
    #: file): with both, the gateway serves https:// and wss:// only
    tls_cert: str | None = None
    tls_key: str | None = None
    # -- end of access ------------------------------------------------------------------


# -- [kafka]: the connection to Kafka (issue 6, item 6) --------------------------------

KAFKA_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
#: the only place the SASL password is read from (never a file, never a command line)
KAFKA_PASSWORD_ENV = "CALLCOST_KAFKA_SASL_PASSWORD"
#: environment variable -> [kafka] key; a variable set (non-empty) wins over the file
KAFKA_ENV = {
    "CALLCOST_KAFKA_SECURITY_PROTOCOL": "security_protocol",
    "CALLCOST_KAFKA_SASL_MECHANISM": "sasl_mechanism",
    "CALLCOST_KAFKA_SASL_USERNAME": "sasl_username",
    "CALLCOST_KAFKA_SSL_CAFILE": "ssl_cafile",
    "CALLCOST_KAFKA_SSL_CERTFILE": "ssl_certfile",
    "CALLCOST_KAFKA_SSL_KEYFILE": "ssl_keyfile",
    "CALLCOST_KAFKA_SSL_CHECK_HOSTNAME": "ssl_check_hostname",
}


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    """``[kafka]`` with ``CALLCOST_KAFKA_*`` over it: how every Kafka client of every
    command connects (``callcost.kafka_client`` turns it into each library's arguments).

    ``sasl_password`` comes from ``CALLCOST_KAFKA_SASL_PASSWORD`` alone and is never
    shown (not in repr). File paths are absolute (relative ones in the file are taken
    from the file's folder, in the environment from the working directory).
    """

    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "PLAIN"
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False, compare=False)
    #: CA certificates (PEM) the broker's certificate must chain to; None: the system's
    ssl_cafile: str | None = None
    #: client certificate (PEM) for brokers that ask for one (``ssl.client.auth``)
    ssl_certfile: str | None = None
    #: the client certificate's private key (PEM, unencrypted)
    ssl_keyfile: str | None = None
    #: the broker's certificate must name the host of the bootstrap address
    ssl_check_hostname: bool = True

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    @property
    def uses_ssl(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")


# -- end of [kafka] ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Settings:
    defaults: Rates = field(default_factory=Rates)
    centres: Mapping[str, Rates] = field(default_factory=lambda: MappingProxyType({}))
    rules: tuple[Rule, ...] = DEFAULT_RULES
    stream: StreamSettings = field(default_factory=StreamSettings)
    sinks: tuple[Sink, ...] = ()
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    source: str = "<defaults>"

    def rates_for(self, centre: str) -> Rates:
        return self.centres.get(centre, self.defaults)

    @property
    def published_windows(self) -> tuple[Window, ...]:
        return tuple(parse_window(w) for w in self.stream.windows)

    @property
    def all_windows(self) -> tuple[Window, ...]:
        """Published windows, then the windows only rules use, each once."""
        names = list(self.stream.windows)
        for r in self.rules:
            if r.window not in names:
                names.append(r.window)
        return tuple(parse_window(w) for w in names)

    def first_rule(self, scope: str, window: str) -> Rule | None:
        for r in self.rules:
            if r.scope == scope and r.window == window:
                return r
        return None


# --------------------------------------------------------------------------- loading


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Read settings from ``path``, or ``$CALLCOST_CONFIG``, or the defaults."""
    if path is None:
        path = os.environ.get("CALLCOST_CONFIG") or None
    if path is None:
        # no file: the defaults, with the CALLCOST_KAFKA_* environment over [kafka]
        return parse_settings("", source="<defaults>")
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read configuration: {exc.strerror}") from None
    return parse_settings(raw.decode("utf-8", errors="replace"), source=path)


def parse_settings(
    text: str, source: str = "<string>", environ: Mapping[str, str] | None = None
) -> Settings:
    """``environ`` (default ``os.environ``) holds the tokens named by ``env`` keys."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    return _Parser(text, source, environ).settings(doc)


_RATE_KEYS = {
    "labour_per_hour",
    "labour_per_hour_by_team",
    "seat_per_hour",
    "fixed_per_hour",
    "telephony_per_minute",
    "billing_increment_s",
    "timezone",
    "band",
    "currency",
}
_RULE_KEYS = {"name", "scope", "window", "band", "min_calls", "hysteresis", "for_s"}
_STREAM_KEYS = {
    "lateness_ms",
    "windows",
    "idle_advance",
    "dedup_ms",
    "call_ttl_ms",
    "max_future_ms",
}
_SINK_KEYS = {
    "url",
    "name",
    "centre",
    "scope",
    "rule",
    "state",
    "secret",
    "timeout_s",
    "max_attempts",
    "backoff_s",
    "queue_size",
    "replay_horizon_s",
}
#: [gateway] keys of the limits block (GatewaySettings)
_GATEWAY_LIMIT_KEYS = {
    "max_frame_bytes",
    "max_request_bytes",
    "max_subscriptions",
    "soft_limit",
    "hard_limit",
    "max_connections",
    "max_connections_per_ip",
    "max_requests_per_s",
    "request_burst",
    "ping_interval_s",
    "ping_timeout_s",
    "open_timeout_s",
    "close_timeout_s",
    "send_timeout_s",
    "write_buffer_bytes",
}
#: [gateway] keys of the access block (tokens, origins, TLS)
_GATEWAY_ACCESS_KEYS = {"tokens", "origins", "tls_cert", "tls_key"}
_TOKEN_KEYS = {"name", "role", "sha256", "env"}
#: a token: characters that may travel in an HTTP header and a websocket subprotocol
_TOKEN_RE = re.compile(r"[A-Za-z0-9._~-]{16,512}")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_SHA256_RE = re.compile(r"[0-9a-fA-F]{64}")
_ORIGIN_RE = re.compile(r"https?://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?")
#: every [gateway] key: the union of its blocks' keys
_GATEWAY_KEYS = _GATEWAY_LIMIT_KEYS | _GATEWAY_ACCESS_KEYS
_SINK_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
#: [kafka] keys (KafkaSettings); the password is not one of them
_KAFKA_KEYS = set(KAFKA_ENV.values())
_TOP_KEYS = {"defaults", "centres", "rules", "stream", "sinks", "gateway", "kafka"}
_CENTRE_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class _Parser:
    def __init__(self, text: str, source: str, environ: Mapping[str, str] | None = None) -> None:
        self.lines = text.splitlines()
        self.source = source
        self.environ = os.environ if environ is None else environ

    # -- error reporting ---------------------------------------------------------

    def fail(self, path: tuple[Any, ...], message: str) -> ConfigError:
        line = self._line_of(path)
        where = f"{self.source}:{line}" if line else self.source
        dotted = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in path)
        dotted = dotted.replace(".[", "[")
        return ConfigError(f"{where}: {dotted}: {message}")

    def _line_of(self, path: tuple[Any, ...]) -> int | None:
        """Best-effort line of a key path: track table headers, then find the key."""
        table: list[Any] = []
        counts: dict[str, int] = {}
        best: int | None = None
        want = [p for p in path]
        header_re = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
        key_re = re.compile(r"^\s*([A-Za-z0-9_\-\"'.]+)\s*=")
        for no, line in enumerate(self.lines, start=1):
            h = header_re.match(line)
            if h:
                parts = [p.strip().strip("\"'") for p in h.group(2).split(".")]
                if h.group(1) == "[[":
                    name = ".".join(parts)
                    idx = counts.get(name, -1) + 1
                    counts[name] = idx
                    table = [*parts, idx]
                else:
                    table = parts
                if table == want[: len(table)] and best is None and len(table) == len(want):
                    best = no
                continue
            k = key_re.match(line)
            if k:
                kparts = [p.strip().strip("\"'") for p in k.group(1).split(".")]
                full = table + kparts
                n = len(full)
                if full == want[:n] or want == full[: len(want)]:
                    return no
        return best

    # -- typed getters -------------------------------------------------------------

    def check_keys(
        self, table: Mapping[str, Any], allowed: set[str], path: tuple[Any, ...]
    ) -> None:
        for key in table:
            if key not in allowed:
                raise self.fail(
                    (*path, key), f"unknown key (expected one of {', '.join(sorted(allowed))})"
                )

    def number(
        self, value: Any, path: tuple[Any, ...], *, minimum: float = 0.0, what: str = ""
    ) -> float:
        """``what`` prefixes the message, e.g. ``"rule 'a': "``."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(path, f"{what}must be a number, not {value!r}")
        f = float(value)
        if not math.isfinite(f) or f < minimum:
            raise self.fail(path, f"{what}must be a finite number >= {minimum:g}, not {value!r}")
        return f

    def integer(
        self, value: Any, path: tuple[Any, ...], *, minimum: int = 0, what: str = ""
    ) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path, f"{what}must be a whole number, not {value!r}")
        if value < minimum:
            raise self.fail(path, f"{what}must be >= {minimum}, not {value!r}")
        return value

    def band(self, value: Any, path: tuple[Any, ...], *, what: str = "") -> tuple[float, float]:
        if not isinstance(value, list) or len(value) != 2:
            raise self.fail(path, f"{what}must be [low, high], not {value!r}")
        low = self.number(value[0], path, what=what)
        high = self.number(value[1], path, what=what)
        if not low < high:
            raise self.fail(path, f"{what}low must be below high, not {value!r}")
        return (low, high)

    def string(self, value: Any, path: tuple[Any, ...]) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(path, f"must be a non-empty string, not {value!r}")
        return value

    # -- sections ------------------------------------------------------------------

    def rates(self, table: Any, base: Rates, path: tuple[Any, ...]) -> Rates:
        if not isinstance(table, dict):
            raise self.fail(path, f"must be a table, not {table!r}")
        self.check_keys(table, _RATE_KEYS, path)
        changes: dict[str, Any] = {}
        for key, value in table.items():
            p = (*path, key)
            if key in ("labour_per_hour", "seat_per_hour", "fixed_per_hour"):
                changes[key] = self.number(value, p)
            elif key == "labour_per_hour_by_team":
                if not isinstance(value, dict):
                    raise self.fail(p, f"must be a table of team = rate, not {value!r}")
                merged = dict(base.labour_per_hour_by_team)
                for team, rate in value.items():
                    merged[team] = self.number(rate, (*p, team))
                changes[key] = MappingProxyType(merged)
            elif key == "telephony_per_minute":
                if not isinstance(value, dict):
                    raise self.fail(p, f"must be a table with inbound and outbound, not {value!r}")
                self.check_keys(value, set(DIRECTIONS), p)
                merged = dict(base.telephony_per_minute)
                for direction, rate in value.items():
                    merged[direction] = self.number(rate, (*p, direction))
                changes[key] = MappingProxyType(merged)
            elif key == "billing_increment_s":
                changes[key] = self.integer(value, p, minimum=1)
            elif key == "timezone":
                tz = self.string(value, p)
                try:
                    ZoneInfo(tz)
                except (ZoneInfoNotFoundError, ValueError):
                    raise self.fail(p, f"unknown time zone {tz!r}") from None
                changes[key] = tz
            elif key == "band":
                changes[key] = self.band(value, p)
            elif key == "currency":
                changes[key] = self.string(value, p)
        return replace(base, **changes)

    def rule(self, table: Any, index: int) -> Rule:
        path: tuple[Any, ...] = ("rules", index)
        if not isinstance(table, dict):
            raise self.fail(path, "must be a table")
        self.check_keys(table, _RULE_KEYS, path)
        for key in ("name", "scope", "window"):
            if key not in table:
                raise self.fail((*path, key), "missing (every rule needs name, scope and window)")
        name = self.string(table["name"], (*path, "name"))
        scope = self.string(table["scope"], (*path, "scope"))
        if scope not in SCOPES:
            raise self.fail(
                (*path, "scope"),
                f"rule {name!r}: unknown scope {scope!r} (one of {', '.join(SCOPES)})",
            )
        try:
            window = parse_window(table["window"]).name
        except ValueError as exc:
            raise self.fail((*path, "window"), f"rule {name!r}: {exc}") from None
        what = f"rule {name!r}: "
        band = self.band(table["band"], (*path, "band"), what=what) if "band" in table else None
        min_calls = self.integer(table.get("min_calls", 20), (*path, "min_calls"), what=what)
        hysteresis = self.number(table.get("hysteresis", 0.05), (*path, "hysteresis"), what=what)
        if hysteresis >= 1:
            raise self.fail(
                (*path, "hysteresis"), f"rule {name!r}: must be below 1, not {hysteresis}"
            )
        for_s = self.integer(table.get("for_s", 60), (*path, "for_s"), what=what)
        return Rule(name, scope, window, band, min_calls, hysteresis, for_s)

    def stream(self, table: Any) -> StreamSettings:
        if not isinstance(table, dict):
            raise self.fail(("stream",), "must be a table")
        self.check_keys(table, _STREAM_KEYS, ("stream",))
        s = StreamSettings()
        changes: dict[str, Any] = {}
        for key in ("lateness_ms", "dedup_ms", "call_ttl_ms", "max_future_ms"):
            if key in table:
                changes[key] = self.integer(table[key], ("stream", key))
        if "idle_advance" in table:
            if not isinstance(table["idle_advance"], bool):
                raise self.fail(
                    ("stream", "idle_advance"),
                    f"must be true or false, not {table['idle_advance']!r}",
                )
            changes["idle_advance"] = table["idle_advance"]
        if "windows" in table:
            ws = table["windows"]
            if not isinstance(ws, list) or not ws:
                raise self.fail(("stream", "windows"), f"must be a non-empty list, not {ws!r}")
            names = []
            for w in ws:
                try:
                    names.append(parse_window(w).name)
                except ValueError as exc:
                    raise self.fail(("stream", "windows"), str(exc)) from None
            if len(set(names)) != len(names):
                raise self.fail(("stream", "windows"), f"a window is listed twice in {ws!r}")
            changes["windows"] = tuple(names)
        return replace(s, **changes)

    def sink(self, table: Any, index: int, rules: tuple[Rule, ...]) -> Sink:
        path: tuple[Any, ...] = ("sinks", index)
        if not isinstance(table, dict):
            raise self.fail(path, "must be a table")
        self.check_keys(table, _SINK_KEYS, path)
        if "url" not in table:
            raise self.fail((*path, "url"), "missing")
        url = self.string(table["url"], (*path, "url"))
        if not url.startswith(("http://", "https://")) or len(url.split("/")[2]) == 0:
            raise self.fail((*path, "url"), "must be an http:// or https:// URL")
        kw: dict[str, Any] = {
            k: self.string(table[k], (*path, k))
            for k in ("name", "centre", "scope", "rule", "state", "secret")
            if k in table
        }
        if "name" in kw and not _SINK_NAME_RE.match(kw["name"]):
            raise self.fail(
                (*path, "name"), f"{kw['name']!r} must be 1-64 chars of A-Z a-z 0-9 . _ -"
            )
        if "centre" in kw and not _CENTRE_RE.match(kw["centre"]):
            raise self.fail(
                (*path, "centre"), f"{kw['centre']!r} must be 1-64 chars of A-Z a-z 0-9 . _ -"
            )
        if "scope" in kw and kw["scope"] not in SCOPES:
            raise self.fail(
                (*path, "scope"), f"unknown scope {kw['scope']!r} (one of {', '.join(SCOPES)})"
            )
        if "state" in kw and kw["state"] not in ("firing", "resolved"):
            raise self.fail(
                (*path, "state"), f"must be 'firing' or 'resolved', not {kw['state']!r}"
            )
        if "rule" in kw and kw["rule"] not in {r.name for r in rules}:
            names = ", ".join(r.name for r in rules)
            raise self.fail((*path, "rule"), f"no rule {kw['rule']!r} (rules: {names})")
        for key in ("timeout_s", "backoff_s"):
            if key in table:
                kw[key] = self.number(table[key], (*path, key))
                if kw[key] <= 0:
                    raise self.fail((*path, key), f"must be above 0, not {table[key]!r}")
        if "replay_horizon_s" in table:
            kw["replay_horizon_s"] = self.number(
                table["replay_horizon_s"], (*path, "replay_horizon_s")
            )
        for key in ("max_attempts", "queue_size"):
            if key in table:
                kw[key] = self.integer(table[key], (*path, key), minimum=1)
        return Sink(url=url, **kw)

    def gateway(self, table: Any) -> GatewaySettings:
        """``[gateway]``: each block of keys has its own method."""
        if not isinstance(table, dict):
            raise self.fail(("gateway",), "must be a table")
        self.check_keys(table, _GATEWAY_KEYS, ("gateway",))
        changes: dict[str, Any] = {}
        changes.update(self.gateway_limits(table))
        changes.update(self.gateway_access(table))
        return replace(GatewaySettings(), **changes)

    # -- the access block of [gateway] ----------------------------------------------

    def gateway_access(self, table: Mapping[str, Any]) -> dict[str, Any]:
        """The access block of ``[gateway]``: tokens, origins, TLS."""
        out: dict[str, Any] = {}
        if "tokens" in table:
            raw = table["tokens"]
            if not isinstance(raw, list):
                raise self.fail(
                    ("gateway", "tokens"), "must be an array of tables [[gateway.tokens]]"
                )
            tokens = [self.access_token(t, i) for i, t in enumerate(raw)]
            names: dict[str, int] = {}
            digests: dict[bytes, int] = {}
            for i, tok in enumerate(tokens):
                if tok.name in names:
                    raise self.fail(
                        ("gateway", "tokens", i, "name"),
                        f"token name {tok.name!r} is used by tokens[{names[tok.name]}] too",
                    )
                names[tok.name] = i
                if tok.sha256 in digests:
                    key = "env" if tok.env is not None else "sha256"
                    raise self.fail(
                        ("gateway", "tokens", i, key),
                        f"token {tok.name!r} is the same token as "
                        f"tokens[{digests[tok.sha256]}]; give each its own",
                    )
                digests[tok.sha256] = i
            out["tokens"] = tuple(tokens)
        if "origins" in table:
            origins = table["origins"]
            if not isinstance(origins, list):
                raise self.fail(
                    ("gateway", "origins"), f"must be a list of origins, not {origins!r}"
                )
            kept: list[str] = []
            for origin in origins:
                if origin == "*":
                    kept.append(origin)
                    continue
                if not isinstance(origin, str) or not _ORIGIN_RE.fullmatch(origin):
                    raise self.fail(
                        ("gateway", "origins"),
                        f"{origin!r} is not an origin like 'https://wall.example.com' or "
                        "'http://10.0.0.5:8080' (scheme, host, optional port; no path) nor '*'",
                    )
                kept.append(origin.lower())
            out["origins"] = tuple(kept)
        paths = {k: table[k] for k in ("tls_cert", "tls_key") if k in table}
        if paths:
            for key in ("tls_cert", "tls_key"):
                if key not in paths:
                    other = "tls_key" if key == "tls_cert" else "tls_cert"
                    raise self.fail(
                        ("gateway", other), f"TLS needs both tls_cert and tls_key; {key} is missing"
                    )
            for key, value in paths.items():
                name = self.string(value, ("gateway", key))
                if not os.path.isabs(name) and not self.source.startswith("<"):
                    name = os.path.join(os.path.dirname(os.path.abspath(self.source)), name)
                if not os.path.isfile(name):
                    raise self.fail(("gateway", key), f"no such file {name!r}")
                out[key] = name
        return out

    def access_token(self, table: Any, index: int) -> AccessToken:
        path: tuple[Any, ...] = ("gateway", "tokens", index)
        if not isinstance(table, dict):
            raise self.fail(path, "must be a table")
        if "token" in table:
            raise self.fail(
                (*path, "token"),
                "a token is never written in the configuration: give its SHA-256 "
                '(sha256 = "...") or the environment variable that holds it (env = "...")',
            )
        self.check_keys(table, _TOKEN_KEYS, path)
        for key in ("name", "role"):
            if key not in table:
                raise self.fail((*path, key), "missing (every token needs name and role)")
        name = self.string(table["name"], (*path, "name"))
        if not _SINK_NAME_RE.match(name):
            raise self.fail((*path, "name"), f"{name!r} must be 1-64 chars of A-Z a-z 0-9 . _ -")
        role = self.string(table["role"], (*path, "role"))
        if role not in ROLES:
            raise self.fail(
                (*path, "role"),
                f"token {name!r}: unknown role {role!r} (one of {', '.join(ROLES)})",
            )
        if ("sha256" in table) == ("env" in table):
            key = "sha256" if "sha256" in table else "env"
            raise self.fail(
                (*path, key) if "sha256" in table else path,
                f"token {name!r}: give exactly one of sha256 (the token's SHA-256 in hex) and "
                "env (the environment variable that holds the token)",
            )
        if "sha256" in table:
            digest = self.string(table["sha256"], (*path, "sha256"))
            if not _SHA256_RE.fullmatch(digest):
                raise self.fail(
                    (*path, "sha256"),
                    f"token {name!r}: must be 64 hex digits (a SHA-256), "
                    f"not {len(digest)} characters",
                )
            return AccessToken(name, role, bytes.fromhex(digest))
        var = self.string(table["env"], (*path, "env"))
        if not _ENV_NAME_RE.fullmatch(var):
            raise self.fail((*path, "env"), f"token {name!r}: {var!r} is not a variable name")
        value = self.environ.get(var)
        if value is None or value == "":
            state = "not set" if value is None else "empty"
            raise self.fail(
                (*path, "env"), f"token {name!r}: environment variable {var} is {state}"
            )
        if not _TOKEN_RE.fullmatch(value):
            # the message never shows the value: it is a secret
            raise self.fail(
                (*path, "env"),
                f"token {name!r}: environment variable {var} must hold 16-512 characters "
                "of A-Z a-z 0-9 . _ ~ - (make one with python3 -c "
                "'import secrets; print(secrets.token_urlsafe(32))')",
            )
        return AccessToken(name, role, hashlib.sha256(value.encode()).digest(), env=var)

    def gateway_limits(self, table: Mapping[str, Any]) -> dict[str, Any]:
        """The limits block of ``[gateway]``."""
        out: dict[str, Any] = {}
        minimum = {"max_frame_bytes": 256, "max_request_bytes": 256, "max_connections_per_ip": 0,
                   "write_buffer_bytes": 1024}  # fmt: skip
        for key in (
            "max_frame_bytes",
            "max_request_bytes",
            "max_subscriptions",
            "soft_limit",
            "hard_limit",
            "max_connections",
            "max_connections_per_ip",
            "request_burst",
            "write_buffer_bytes",
        ):
            if key in table:
                out[key] = self.integer(table[key], ("gateway", key), minimum=minimum.get(key, 1))
        for key in (
            "max_requests_per_s",
            "ping_interval_s",
            "ping_timeout_s",
            "open_timeout_s",
            "close_timeout_s",
            "send_timeout_s",
        ):
            if key in table:
                out[key] = self.number(table[key], ("gateway", key))
                if out[key] <= 0 and key != "ping_interval_s":
                    raise self.fail(("gateway", key), f"must be above 0, not {table[key]!r}")
        base = GatewaySettings()
        soft = out.get("soft_limit", base.soft_limit)
        hard = out.get("hard_limit", base.hard_limit)
        if soft > hard:
            key = "soft_limit" if "soft_limit" in table else "hard_limit"
            raise self.fail(
                ("gateway", key), f"soft_limit ({soft}) must not be above hard_limit ({hard})"
            )
        return out

    # -- [kafka]: the connection to Kafka (KafkaSettings) ----------------------------

    def kafka(self, table: Any) -> KafkaSettings:
        """``[kafka]``, then the ``CALLCOST_KAFKA_*`` environment variables over it;
        an error names the file, line and key, or the variable."""
        if not isinstance(table, dict):
            raise self.fail(("kafka",), "must be a table")
        if "sasl_password" in table:
            raise self.fail(
                ("kafka", "sasl_password"),
                "a password is never written in the configuration: set the environment "
                f"variable {KAFKA_PASSWORD_ENV}",
            )
        self.check_keys(table, _KAFKA_KEYS, ("kafka",))
        values: dict[str, Any] = {}
        #: where each value came from, to name it in an error
        origin: dict[str, Callable[[str], ConfigError]] = {}
        for key, raw in table.items():
            path = ("kafka", key)

            def at_key(message: str, path: tuple[Any, ...] = path) -> ConfigError:
                return self.fail(path, message)

            values[key] = self.kafka_value(key, raw, at_key, in_file=True)
            origin[key] = at_key
        for var, key in KAFKA_ENV.items():
            text = self.environ.get(var, "").strip()
            if not text:
                continue

            def at_var(message: str, var: str = var) -> ConfigError:
                return ConfigError(f"{var}: {message}")

            values[key] = self.kafka_value(key, text, at_var, in_file=False)
            origin[key] = at_var
        k = replace(KafkaSettings(), **values)
        if k.uses_sasl and not k.sasl_username:
            raise origin["security_protocol"](
                f"{k.security_protocol} needs a user name: set kafka.sasl_username or "
                "CALLCOST_KAFKA_SASL_USERNAME"
            )
        for key in ("sasl_mechanism", "sasl_username"):
            if key in values and not k.uses_sasl:
                raise origin[key](
                    f"is set but security_protocol is {k.security_protocol}: SASL needs "
                    "SASL_PLAINTEXT or SASL_SSL"
                )
        for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname"):
            if key in values and not k.uses_ssl:
                raise origin[key](
                    f"is set but security_protocol is {k.security_protocol}: TLS needs SSL "
                    "or SASL_SSL"
                )
        if k.ssl_keyfile and not k.ssl_certfile:
            raise origin["ssl_keyfile"]("a private key needs its certificate (ssl_certfile)")
        if k.uses_sasl:
            return replace(k, sasl_password=self.environ.get(KAFKA_PASSWORD_ENV) or None)
        return k

    def kafka_value(
        self, key: str, raw: Any, fail: Callable[[str], ConfigError], *, in_file: bool
    ) -> Any:
        """One [kafka] value, from the file (TOML types) or the environment (text)."""
        if key == "ssl_check_hostname":
            if isinstance(raw, bool):
                return raw
            if not in_file and raw.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                return raw.lower() in ("1", "true", "yes", "on")
            raise fail(f"must be true or false, not {raw!r}")
        if not isinstance(raw, str) or not raw.strip():
            raise fail(f"must be a non-empty string, not {raw!r}")
        if key in ("security_protocol", "sasl_mechanism"):
            allowed = KAFKA_PROTOCOLS if key == "security_protocol" else KAFKA_MECHANISMS
            if raw.upper() not in allowed:
                raise fail(f"unknown {key.replace('_', ' ')} {raw!r} (one of {', '.join(allowed)})")
            return raw.upper()
        if key == "sasl_username":
            return raw
        name = os.path.expanduser(raw)  # a file: ssl_cafile, ssl_certfile, ssl_keyfile
        if in_file and not os.path.isabs(name) and not self.source.startswith("<"):
            name = os.path.join(os.path.dirname(os.path.abspath(self.source)), name)
        name = os.path.abspath(name)
        if not os.path.isfile(name):
            raise fail(f"no such file {name!r}")
        return name

    # -- end of [kafka] ----------------------------------------------------------------

    def settings(self, doc: dict[str, Any]) -> Settings:
        self.check_keys(doc, _TOP_KEYS, ())
        defaults = self.rates(doc.get("defaults", {}), Rates(), ("defaults",))
        centres: dict[str, Rates] = {}
        raw_centres = doc.get("centres", {})
        if not isinstance(raw_centres, dict):
            raise self.fail(("centres",), "must be a table of [centres.ID]")
        for cid, table in raw_centres.items():
            if not _CENTRE_RE.match(cid):
                raise self.fail(
                    ("centres", cid), f"centre id {cid!r} must be 1-64 chars of A-Z a-z 0-9 . _ -"
                )
            centres[cid] = self.rates(table, defaults, ("centres", cid))
        rules: tuple[Rule, ...] = DEFAULT_RULES
        if "rules" in doc:
            raw_rules = doc["rules"]
            if not isinstance(raw_rules, list):
                raise self.fail(("rules",), "must be an array of tables [[rules]]")
            parsed = [self.rule(t, i) for i, t in enumerate(raw_rules)]
            seen: set[str] = set()
            for i, r in enumerate(parsed):
                if r.name in seen:
                    raise self.fail(("rules", i, "name"), f"rule name {r.name!r} is used twice")
                seen.add(r.name)
            rules = tuple(parsed)
        stream = self.stream(doc.get("stream", {}))
        gateway = self.gateway(doc.get("gateway", {}))
        kafka = self.kafka(doc.get("kafka", {}))
        sinks: tuple[Sink, ...] = ()
        if "sinks" in doc:
            if not isinstance(doc["sinks"], list):
                raise self.fail(("sinks",), "must be an array of tables [[sinks]]")
            sinks = tuple(self.sink(t, i, rules) for i, t in enumerate(doc["sinks"]))
            ids: dict[str, int] = {}
            for i, sink in enumerate(sinks):
                if sink.id in ids:
                    key = "name" if sink.name is not None else "url"
                    raise self.fail(
                        ("sinks", i, key),
                        f"sink {sink.id!r} is the same as sinks[{ids[sink.id]}]"
                        + ("" if sink.name else "; give each sink with this URL a name"),
                    )
                ids[sink.id] = i
        return Settings(
            defaults=defaults,
            centres=MappingProxyType(centres),
            rules=rules,
            stream=stream,
            sinks=sinks,
            gateway=gateway,
            kafka=kafka,
            source=self.source,
        )
