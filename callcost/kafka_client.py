"""The Kafka connection of every callcost client: one description, three libraries.

:class:`callcost.streams.config.KafkaSettings` (``[kafka]`` of the configuration with
the ``CALLCOST_KAFKA_*`` environment over it; the SASL password only from
``CALLCOST_KAFKA_SASL_PASSWORD``) says how to connect. This shell turns it into the
keyword arguments of each client library:

- :func:`aiokafka_kwargs` for ``AIOKafkaConsumer``/``AIOKafkaProducer`` (the gateway,
  the worker's batch intake);
- :func:`kafka_python_kwargs` for ``KafkaProducer``/``KafkaConsumer``/
  ``KafkaAdminClient`` (produce, simulate, topics, the worker's side reads);
- :func:`faust_kwargs` and :func:`faust_broker_url` for ``faust.App``.

Neither library says *why* a connection failed when the broker refuses the
credentials: kafka-python retries until its bootstrap time-out, aiokafka raises
"Unable to bootstrap". So every command first calls :func:`check` (or
:func:`acheck`): one connection with the credentials, which raises a
:class:`BrokerError` naming the user and the address when the broker refuses them, and
only returns a note when no broker answers (the commands that wait for a broker go on
waiting). The password is never part of a message, a log line or a repr.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

from callcost.errors import BrokerError, ConfigError
from callcost.streams.config import KAFKA_PASSWORD_ENV, KafkaSettings, Settings

#: how long :func:`check` waits for one broker's answer
CHECK_TIMEOUT_S = 10.0


def kafka_settings(settings: Settings | KafkaSettings | None) -> KafkaSettings:
    """The Kafka part of ``settings`` (None: PLAINTEXT, no credentials)."""
    if settings is None:
        return KafkaSettings()
    if isinstance(settings, Settings):
        return settings.kafka
    return settings


def describe(settings: Settings | KafkaSettings | None) -> str:
    """How clients connect, for logs: never the password."""
    k = kafka_settings(settings)
    text = k.security_protocol
    if k.uses_sasl:
        text += f" ({k.sasl_mechanism} as {k.sasl_username!r})"
    if k.uses_ssl:
        ca = k.ssl_cafile or "the system's CAs"
        text += f", TLS trusting {ca}"
        if k.ssl_certfile:
            text += f", client certificate {k.ssl_certfile}"
        if not k.ssl_check_hostname:
            text += ", host names not checked"
    return text


def _password(k: KafkaSettings) -> str:
    if not k.sasl_password:
        raise ConfigError(
            f"{KAFKA_PASSWORD_ENV} is not set: the SASL user {k.sasl_username!r} "
            f"({k.security_protocol}, {k.sasl_mechanism}) needs its password there"
        )
    return k.sasl_password


def ssl_context(settings: Settings | KafkaSettings | None) -> ssl.SSLContext | None:
    """The TLS context of ``SSL``/``SASL_SSL`` (None otherwise): the broker's certificate
    must chain to ``ssl_cafile`` (else the system's CAs); the client certificate is
    presented when there is one."""
    k = kafka_settings(settings)
    if not k.uses_ssl:
        return None
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=k.ssl_cafile)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"kafka.ssl_cafile {k.ssl_cafile!r}: not usable CA certificates "
                          f"(PEM): {exc}") from None
    ctx.check_hostname = k.ssl_check_hostname
    if k.ssl_certfile:
        try:
            ctx.load_cert_chain(k.ssl_certfile, k.ssl_keyfile)
        except (OSError, ssl.SSLError) as exc:
            files = k.ssl_certfile + (f" and {k.ssl_keyfile}" if k.ssl_keyfile else "")
            raise ConfigError(
                f"kafka.ssl_certfile/ssl_keyfile: {files}: not a usable certificate and "
                f"unencrypted private key (PEM): {exc}"
            ) from None
    return ctx


def _sasl_kwargs(k: KafkaSettings) -> dict[str, Any]:
    """The SASL arguments, named alike by aiokafka and kafka-python."""
    if not k.uses_sasl:
        return {}
    return {"sasl_mechanism": k.sasl_mechanism, "sasl_plain_username": k.sasl_username,
            "sasl_plain_password": _password(k)}


def aiokafka_kwargs(settings: Settings | KafkaSettings | None) -> dict[str, Any]:
    """Keyword arguments of ``AIOKafkaConsumer``, ``AIOKafkaProducer`` and
    ``aiokafka.conn.create_conn``: ``security_protocol`` and, as it needs them,
    ``sasl_mechanism``, ``sasl_plain_username``/``sasl_plain_password`` (SCRAM uses
    them too) and ``ssl_context``."""
    k = kafka_settings(settings)
    kw: dict[str, Any] = {"security_protocol": k.security_protocol}
    kw.update(_sasl_kwargs(k))
    if k.uses_ssl:
        kw["ssl_context"] = ssl_context(k)
    return kw


def kafka_python_kwargs(settings: Settings | KafkaSettings | None) -> dict[str, Any]:
    """Keyword arguments of kafka-python's ``KafkaProducer``, ``KafkaConsumer`` and
    ``KafkaAdminClient``."""
    k = kafka_settings(settings)
    kw: dict[str, Any] = {"security_protocol": k.security_protocol}
    kw.update(_sasl_kwargs(k))
    if k.uses_ssl:
        ssl_context(k)  # the files are usable: fail here with the key's name, not later
        kw["ssl_cafile"] = k.ssl_cafile
        kw["ssl_certfile"] = k.ssl_certfile
        kw["ssl_keyfile"] = k.ssl_keyfile
        kw["ssl_check_hostname"] = k.ssl_check_hostname
    return kw


def faust_kwargs(settings: Settings | KafkaSettings | None) -> dict[str, Any]:
    """Keyword arguments of ``faust.App``: ``broker_credentials`` (nothing for
    PLAINTEXT). faust-streaming 0.15 passes them to every consumer and producer it
    makes: ``SASLCredentials`` (SASL_SSL when it has an ``ssl_context``) or
    ``SSLCredentials``."""
    k = kafka_settings(settings)
    if k.security_protocol == "PLAINTEXT":
        return {}
    import faust

    ctx = ssl_context(k)
    if k.uses_sasl:
        creds: Any = faust.SASLCredentials(
            username=k.sasl_username,
            password=_password(k),
            mechanism=k.sasl_mechanism,
            ssl_context=ctx,
        )
    else:
        creds = faust.SSLCredentials(ctx)
    return {"broker_credentials": creds}


def faust_broker_url(bootstrap: str) -> str:
    """``host:port[,host:port]`` as Faust's ``broker``: ``kafka://h1:p1;kafka://h2:p2``.
    The scheme picks Faust's aiokafka transport; security is in ``broker_credentials``."""
    hosts = [h.strip() for h in bootstrap.split(",") if h.strip()]
    if not hosts:
        raise ConfigError(f"bootstrap {bootstrap!r} names no host:port")
    return ";".join(f"kafka://{h}" for h in hosts)


def _addresses(bootstrap: str) -> list[tuple[str, int]]:
    out = []
    for item in bootstrap.split(","):
        host, sep, port = item.strip().rpartition(":")
        if not sep or not port.isdigit():
            raise ConfigError(f"bootstrap address {item.strip()!r} is not host:port")
        out.append((host.strip("[]") or "127.0.0.1", int(port)))
    return out


def _refused(k: KafkaSettings, where: str, exc: BaseException) -> BrokerError | None:
    """The error to stop on when ``exc`` says the broker refused these settings; None
    when it only says that no broker answered."""
    from aiokafka import errors as ak

    if isinstance(exc, ak.SaslAuthenticationFailed | ak.AuthenticationFailedError):
        detail = str(exc).strip() or type(exc).__name__
        return BrokerError(
            f"Kafka authentication failed for user {k.sasl_username!r} at {where} "
            f"({k.security_protocol}, {k.sasl_mechanism}): {detail}; check "
            f"CALLCOST_KAFKA_SASL_USERNAME (or kafka.sasl_username) and {KAFKA_PASSWORD_ENV}"
        )
    if isinstance(exc, ak.UnsupportedSaslMechanismError | ak.AuthenticationMethodNotSupported):
        return BrokerError(
            f"the Kafka broker at {where} does not accept SASL mechanism "
            f"{k.sasl_mechanism} ({exc}); set kafka.sasl_mechanism or "
            "CALLCOST_KAFKA_SASL_MECHANISM to one it has enabled"
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        return BrokerError(
            f"TLS to the Kafka broker at {where}: its certificate is not trusted "
            f"({exc.verify_message}); check kafka.ssl_cafile / CALLCOST_KAFKA_SSL_CAFILE"
            + (" and that the certificate names this host" if k.ssl_check_hostname else "")
        )
    if isinstance(exc, ssl.SSLError):
        return BrokerError(f"TLS handshake with the Kafka broker at {where} failed: {exc}")
    if isinstance(exc, ak.KafkaError) and not isinstance(exc, ak.KafkaConnectionError):
        return BrokerError(
            f"the Kafka broker at {where} refused the connection ({k.security_protocol}): "
            f"{type(exc).__name__}: {exc}"
        )
    return None


async def acheck(
    bootstrap: str,
    settings: Settings | KafkaSettings | None,
    timeout_s: float = CHECK_TIMEOUT_S,
) -> str | None:
    """Connect once with ``settings`` to the first bootstrap address that answers.

    Returns None when a broker accepted the connection (or there is nothing to check:
    PLAINTEXT), a short note when no broker answered; raises :class:`BrokerError` when
    a broker refused the credentials or the TLS handshake, naming user and address."""
    k = kafka_settings(settings)
    if k.security_protocol == "PLAINTEXT":
        return None
    from aiokafka.conn import create_conn

    kw = aiokafka_kwargs(k)
    notes = []
    for host, port in _addresses(bootstrap):
        where = f"{host}:{port}"
        try:
            async with asyncio.timeout(timeout_s):
                conn = await create_conn(
                    host, port, client_id="callcost-check",
                    request_timeout_ms=int(timeout_s * 1000), **kw,
                )  # fmt: skip
        except Exception as exc:
            refused = _refused(k, where, exc)
            if refused is not None:
                raise refused from None
            notes.append(f"{where}: {type(exc).__name__}: {exc}".rstrip(": "))
            continue
        with contextlib.suppress(Exception):
            conn.close()
        return None
    return "no Kafka broker answered (" + "; ".join(notes) + ")"


def check(
    bootstrap: str,
    settings: Settings | KafkaSettings | None,
    timeout_s: float = CHECK_TIMEOUT_S,
) -> str | None:
    """:func:`acheck` for code outside an event loop."""
    k = kafka_settings(settings)
    if k.security_protocol == "PLAINTEXT":
        return None
    return asyncio.run(acheck(bootstrap, k, timeout_s))
