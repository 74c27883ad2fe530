"""What a callcost TOML file may hold: each section declared once, as msgspec structs.

``msgspec.convert`` turns each section of the parsed TOML document into these tables
(:class:`Document` holds them all), checking keys, types and ranges; what one field
cannot say alone (a band's order, a time zone, a window, an environment variable) is
left to :mod:`callcost.streams.config_checks`.
A field the file does not give stays :data:`msgspec.UNSET`, so that the settings keep
their defaults and a centre keeps the ``[defaults]`` it does not override.

Besides the types, each table carries the wording of its errors as class variables
(``not_a_table``, ``missing``, ``refused``, ``named_by``), and containers carry theirs as
``Meta(extra={"expect": ...})``: :mod:`callcost.streams.config_errors` reads them to say
what is wrong in the words users have always read. Pure: msgspec and stdlib only.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any, ClassVar

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from callcost.streams.vocabulary import CALL_DIRECTIONS


class Table(Struct, forbid_unknown_fields=True, kw_only=True):
    """A TOML table: unknown keys are refused; error wording in class variables."""

    #: the message when the value is not a table (``{value!r}`` is filled in)
    not_a_table: ClassVar[str] = "must be a table"
    #: the message for a required key that is absent
    missing: ClassVar[str] = "missing"
    #: keys refused with a message of their own rather than "unknown key"
    refused: ClassVar[dict[str, str]] = {}
    #: (key, fields): errors of these fields begin ``<key> '<name>': ``, e.g. "rule 'a': "
    named_by: ClassVar[tuple[str, frozenset[str]] | None] = None


def _expect(message: str) -> Meta:
    """The error of a container that is not of its kind (``{value!r}`` is filled in)."""
    return Meta(extra={"expect": message})


#: a finite number >= 0
Amount = Annotated[float, Meta(ge=0, le=sys.float_info.max)]
#: a finite number > 0
Positive = Annotated[float, Meta(gt=0, le=sys.float_info.max)]
Count = Annotated[int, Meta(ge=0)]
AtLeastOne = Annotated[int, Meta(ge=1)]
Text = Annotated[str, Meta(min_length=1)]
Band = Annotated[tuple[Amount, Amount], _expect("must be [low, high], not {value!r}")]


# -- [defaults] and [centres.ID] ------------------------------------------------------

#: ``telephony_per_minute``: one rate per call direction
Telephony = msgspec.defstruct(
    "Telephony",
    [(d, Amount | UnsetType, UNSET) for d in CALL_DIRECTIONS],
    bases=(Table,),
    namespace={"not_a_table": "must be a table with inbound and outbound, not {value!r}"},
)


class RatesTable(Table):
    not_a_table: ClassVar[str] = "must be a table, not {value!r}"

    labour_per_hour: Amount | UnsetType = UNSET
    labour_per_hour_by_team: (
        Annotated[dict[str, Amount], _expect("must be a table of team = rate, not {value!r}")]
        | UnsetType
    ) = UNSET
    seat_per_hour: Amount | UnsetType = UNSET
    fixed_per_hour: Amount | UnsetType = UNSET
    telephony_per_minute: Telephony | UnsetType = UNSET  # type: ignore[valid-type]
    billing_increment_s: AtLeastOne | UnsetType = UNSET
    timezone: Text | UnsetType = UNSET
    band: Band | UnsetType = UNSET
    currency: Text | UnsetType = UNSET


# -- [[rules]] --------------------------------------------------------------------------


class RuleTable(Table):
    missing: ClassVar[str] = "missing (every rule needs name, scope and window)"
    named_by: ClassVar[tuple[str, frozenset[str]] | None] = (
        "rule",
        frozenset({"window", "band", "min_calls", "hysteresis", "for_s"}),
    )

    name: Text
    scope: Text
    #: checked by :func:`callcost.streams.vocabulary.parse_window`, which words its errors
    window: Any
    band: Band | UnsetType = UNSET
    min_calls: Count | UnsetType = UNSET
    hysteresis: Annotated[float, Meta(ge=0, lt=1)] | UnsetType = UNSET
    for_s: Count | UnsetType = UNSET


# -- [stream] ----------------------------------------------------------------------------


class StreamTable(Table):
    lateness_ms: Count | UnsetType = UNSET
    #: each checked by :func:`callcost.streams.vocabulary.parse_window`
    windows: (
        Annotated[list[Any], Meta(min_length=1), _expect("must be a non-empty list, not {value!r}")]
        | UnsetType
    ) = UNSET
    idle_advance: bool | UnsetType = UNSET
    dedup_ms: Count | UnsetType = UNSET
    call_ttl_ms: Count | UnsetType = UNSET
    max_future_ms: Count | UnsetType = UNSET


# -- [[sinks]] ---------------------------------------------------------------------------


class SinkTable(Table):
    url: Text
    name: Text | UnsetType = UNSET
    centre: Text | UnsetType = UNSET
    scope: Text | UnsetType = UNSET
    rule: Text | UnsetType = UNSET
    state: Text | UnsetType = UNSET
    secret: Text | UnsetType = UNSET
    timeout_s: Positive | UnsetType = UNSET
    max_attempts: AtLeastOne | UnsetType = UNSET
    backoff_s: Positive | UnsetType = UNSET
    queue_size: AtLeastOne | UnsetType = UNSET
    replay_horizon_s: Amount | UnsetType = UNSET


# -- [gateway] and [[gateway.tokens]] ----------------------------------------------------


class TokenTable(Table):
    missing: ClassVar[str] = "missing (every token needs name and role)"
    refused: ClassVar[dict[str, str]] = {
        "token": "a token is never written in the configuration: give its SHA-256 "
        '(sha256 = "...") or the environment variable that holds it (env = "...")'
    }

    name: Text
    role: Text
    sha256: Text | UnsetType = UNSET
    env: Text | UnsetType = UNSET


class GatewayTable(Table):
    # the limits block
    max_frame_bytes: Annotated[int, Meta(ge=256)] | UnsetType = UNSET
    max_request_bytes: Annotated[int, Meta(ge=256)] | UnsetType = UNSET
    max_subscriptions: AtLeastOne | UnsetType = UNSET
    soft_limit: AtLeastOne | UnsetType = UNSET
    hard_limit: AtLeastOne | UnsetType = UNSET
    max_connections: AtLeastOne | UnsetType = UNSET
    max_connections_per_ip: Count | UnsetType = UNSET
    max_requests_per_s: Positive | UnsetType = UNSET
    request_burst: AtLeastOne | UnsetType = UNSET
    #: 0 disables keepalive
    ping_interval_s: Amount | UnsetType = UNSET
    ping_timeout_s: Positive | UnsetType = UNSET
    open_timeout_s: Positive | UnsetType = UNSET
    close_timeout_s: Positive | UnsetType = UNSET
    send_timeout_s: Positive | UnsetType = UNSET
    write_buffer_bytes: Annotated[int, Meta(ge=1024)] | UnsetType = UNSET
    # the access block
    tokens: (
        Annotated[list[TokenTable], _expect("must be an array of tables [[gateway.tokens]]")]
        | UnsetType
    ) = UNSET
    #: each checked by :func:`callcost.streams.config_checks.origins`
    origins: (
        Annotated[list[Any], _expect("must be a list of origins, not {value!r}")] | UnsetType
    ) = UNSET
    tls_cert: Text | UnsetType = UNSET
    tls_key: Text | UnsetType = UNSET


# -- [kafka] -------------------------------------------------------------------------------


class KafkaTable(Table):
    """The keys of ``[kafka]``; ``CALLCOST_KAFKA_*`` may give each of them too."""

    refused: ClassVar[dict[str, str]] = {
        "sasl_password": "a password is never written in the configuration: set the "
        "environment variable CALLCOST_KAFKA_SASL_PASSWORD"
    }

    security_protocol: Text | UnsetType = UNSET
    sasl_mechanism: Text | UnsetType = UNSET
    sasl_username: Text | UnsetType = UNSET
    ssl_cafile: Text | UnsetType = UNSET
    ssl_certfile: Text | UnsetType = UNSET
    ssl_keyfile: Text | UnsetType = UNSET
    ssl_check_hostname: bool | UnsetType = UNSET


# -- the file ------------------------------------------------------------------------------


class Document(Table):
    defaults: RatesTable = msgspec.field(default_factory=RatesTable)
    centres: Annotated[dict[str, RatesTable], _expect("must be a table of [centres.ID]")] = (
        msgspec.field(default_factory=dict)
    )
    rules: (
        Annotated[list[RuleTable], _expect("must be an array of tables [[rules]]")] | UnsetType
    ) = UNSET
    stream: StreamTable = msgspec.field(default_factory=StreamTable)
    sinks: Annotated[list[SinkTable], _expect("must be an array of tables [[sinks]]")] = (
        msgspec.field(default_factory=list)
    )
    gateway: GatewayTable = msgspec.field(default_factory=GatewayTable)
    kafka: KafkaTable = msgspec.field(default_factory=KafkaTable)


def given(table: Struct) -> dict[str, Any]:
    """The fields of ``table`` the file gave, by name (UNSET ones left out)."""
    return {
        name: value
        for name in table.__struct_fields__
        if (value := getattr(table, name)) is not UNSET
    }
