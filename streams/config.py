"""Settings from TOML (SPEC section 2): one frozen object, checked once at start-up.

Every error names the file, the line and the key at fault, so that a bad configuration
stops start-up with something a person can act on::

    callcost.toml:14: centres.prg.timezone: unknown time zone 'Europe/Prag'

The file's shape is declared in :mod:`callcost.streams.config_schema` (msgspec), the
checks across fields are :mod:`callcost.streams.config_checks`, and
:mod:`callcost.streams.config_errors` words the errors; this module holds the settings
types and builds them. Pure module: no I/O besides reading the file it is given.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from callcost.errors import ConfigError
from callcost.streams import config_checks as checks
from callcost.streams.config_errors import Where
from callcost.streams.config_schema import (
    Document,
    GatewayTable,
    RatesTable,
    RuleTable,
    SinkTable,
    given,
)
from callcost.streams.vocabulary import Window, parse_window


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

    Fields are grouped in blocks, one per concern (as in
    :class:`~callcost.streams.config_schema.GatewayTable`); keep a new concern in a block of
    its own.
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
    where = Where(text, source, doc)
    _convert(where, {k: v for k, v in doc.items() if k not in Document.__struct_fields__})
    return _settings(where, os.environ if environ is None else environ)


def _convert(where: Where, part: dict[str, Any]) -> Document:
    """``part`` of the file (some of its sections) as a :class:`Document`."""
    try:
        return msgspec.convert(part, Document)
    except msgspec.ValidationError as exc:
        raise where.invalid(exc, Document) from None


def _section(where: Where, name: str) -> Any:
    """One section of the file, converted: each is converted, then checked, in turn, so
    that a file with errors in several sections is told of the first, as before."""
    part = {name: where.doc[name]} if name in where.doc else {}
    return getattr(_convert(where, part), name)


def _settings(where: Where, environ: Mapping[str, str]) -> Settings:
    """The settings of the file, section by section: converted, then checked across fields."""
    defaults = _rates(where, _section(where, "defaults"), Rates(), ("defaults",))
    centres: dict[str, Rates] = {}
    for cid, table in _section(where, "centres").items():
        checks.check_centre_id(where, cid)
        centres[cid] = _rates(where, table, defaults, ("centres", cid))
    rules: tuple[Rule, ...] = DEFAULT_RULES
    rule_tables: list[RuleTable] | msgspec.UnsetType = _section(where, "rules")
    if isinstance(rule_tables, list):
        rules = tuple(
            Rule(**{**given(t), "window": checks.rule_window(where, t, i)})
            for i, t in enumerate(rule_tables)
        )
        checks.check_rule_names(where, [r.name for r in rules])
    stream = given(_section(where, "stream"))
    if "windows" in stream:
        stream["windows"] = checks.stream_windows(where, stream["windows"])
    gateway = _gateway(where, _section(where, "gateway"), environ)
    kafka = checks.kafka(
        where,
        _section(where, "kafka"),
        environ,
        env_keys=KAFKA_ENV,
        password_env=KAFKA_PASSWORD_ENV,
        allowed={"security_protocol": KAFKA_PROTOCOLS, "sasl_mechanism": KAFKA_MECHANISMS},
    )
    names = [r.name for r in rules]
    sink_tables: list[SinkTable] = _section(where, "sinks")
    for i, t in enumerate(sink_tables):
        checks.check_sink(where, t, i, names)
    sinks = tuple(Sink(**given(t)) for t in sink_tables)
    checks.check_sink_ids(where, [(s.id, s.name is not None) for s in sinks])
    return Settings(
        defaults=defaults,
        centres=MappingProxyType(centres),
        rules=rules,
        stream=StreamSettings(**stream),
        sinks=sinks,
        gateway=gateway,
        kafka=KafkaSettings(**kafka),
        source=where.source,
    )


def _rates(where: Where, table: RatesTable, base: Rates, path: tuple[str, ...]) -> Rates:
    """``base`` with what ``table`` gives over it; the two rate tables merge key by key."""
    checks.check_rates(where, table, path)
    changes = given(table)
    if "labour_per_hour_by_team" in changes:
        by_team = {**base.labour_per_hour_by_team, **changes["labour_per_hour_by_team"]}
        changes["labour_per_hour_by_team"] = MappingProxyType(by_team)
    if "telephony_per_minute" in changes:
        telephony = {**base.telephony_per_minute, **given(changes["telephony_per_minute"])}
        changes["telephony_per_minute"] = MappingProxyType(telephony)
    return replace(base, **changes)


def _gateway(where: Where, table: GatewayTable, environ: Mapping[str, str]) -> GatewaySettings:
    """``[gateway]``: the limits, then the access block (tokens, origins, TLS)."""
    values = given(table)
    base = GatewaySettings()
    soft = values.get("soft_limit", base.soft_limit)
    checks.check_limits(where, table, soft, values.get("hard_limit", base.hard_limit))
    if isinstance(table.tokens, list):
        tokens = []
        for i, t in enumerate(table.tokens):
            digest, env = checks.token_hash(where, t, i, environ, ROLES)
            tokens.append(AccessToken(t.name, t.role, digest, env=env))
        checks.check_token_twins(where, [(t.name, t.sha256, t.env is not None) for t in tokens])
        values["tokens"] = tuple(tokens)
    if isinstance(table.origins, list):
        values["origins"] = checks.origins(where, table.origins)
    values.update(checks.tls_files(where, table))
    return replace(base, **values)
