"""Where one local Kafka broker lives and how it listens: :class:`BrokerConfig`.

A broker's *home* holds its data, logs, pid file and ``server.properties``; its defaults
come from the environment (``CALLCOST_BROKER_DIR``, ``CALLCOST_BROKER_PORT``,
``CALLCOST_BROKER_CONTROLLER_PORT``, ``CALLCOST_BROKER_HEAP_MB``) and the repository
(:func:`repo_root`).

``BrokerConfig(sasl_users={"callcost": "secret"})`` (not the default) makes the client
listener SASL_PLAINTEXT with the PLAIN mechanism and those users; the broker itself uses
an extra user of its own (:data:`BROKER_USER`), whose random password is kept in
``home/broker.secret``. ``ssl_certfile``/``ssl_keyfile`` (PEM: the broker's certificate
chain and unencrypted key) make it TLS: SSL, or SASL_SSL with users; ``ssl_cafile`` is
what the broker and its probes trust.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from callcost.errors import BrokerError

DEFAULT_PORT = 9092
DEFAULT_HEAP_MB = 512
#: the SASL user the broker itself connects as (inter-broker listener, probes)
BROKER_USER = "callcost-broker"
_SASL_USER_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def repo_root() -> Path:
    """The repository: ``CALLCOST_ROOT``, else the folder above this package."""
    env = os.environ.get("CALLCOST_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve().parent.parent
    if (here / "broker" / "pom.xml").exists():
        return here
    cwd = Path.cwd().resolve()
    if (cwd / "broker" / "pom.xml").exists():
        return cwd
    return here


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise BrokerError(f"{name}={raw!r} is not a whole number") from None


def _default_home() -> Path:
    env = os.environ.get("CALLCOST_BROKER_DIR", "").strip()
    return Path(env) if env else repo_root() / "var" / "broker"


def _default_port() -> int:
    return _env_int("CALLCOST_BROKER_PORT", DEFAULT_PORT)


@dataclass(frozen=True)
class BrokerConfig:
    """Where one local broker lives and how it listens.

    ``controller_port`` 0 means: ``CALLCOST_BROKER_CONTROLLER_PORT`` when ``port`` is the
    one from the environment (or the default), else ``port + 1``.
    """

    home: Path = field(default_factory=_default_home)
    port: int = field(default_factory=_default_port)
    controller_port: int = 0
    heap_mb: int = field(
        default_factory=lambda: _env_int("CALLCOST_BROKER_HEAP_MB", DEFAULT_HEAP_MB)
    )
    root: Path = field(default_factory=repo_root)
    #: SASL_PLAINTEXT client listener with these PLAIN users (name -> password); empty:
    #: PLAINTEXT. Kept out of repr so that a password is never printed.
    sasl_users: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({}), repr=False, hash=False
    )
    #: TLS on the client listener: the broker's certificate chain and unencrypted key
    #: (PEM), and the CA certificates that the broker (to itself) and probes trust
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_cafile: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "home", Path(self.home).expanduser().resolve())
        object.__setattr__(self, "root", Path(self.root).resolve())
        users = dict(self.sasl_users or {})
        for name, password in users.items():
            if not _SASL_USER_RE.match(name) or name == BROKER_USER:
                raise BrokerError(
                    f"SASL user name {name!r} must be 1-64 chars of A-Z a-z 0-9 . _ - "
                    f"and not {BROKER_USER!r}"
                )
            if not password or any(c in password for c in '"\\\n\r'):
                raise BrokerError(
                    f"the password of SASL user {name!r} must be non-empty, without quotes, "
                    "backslashes or line breaks"
                )
        object.__setattr__(self, "sasl_users", MappingProxyType(users))
        tls = {"ssl_certfile": self.ssl_certfile, "ssl_keyfile": self.ssl_keyfile,
               "ssl_cafile": self.ssl_cafile}  # fmt: skip
        if any(tls.values()) and not all(tls.values()):
            missing = ", ".join(k for k, v in tls.items() if not v)
            raise BrokerError(
                f"a TLS broker needs ssl_certfile, ssl_keyfile and ssl_cafile; {missing} missing"
            )
        for name, value in tls.items():
            if value is not None:
                path = Path(value).expanduser().resolve()
                if not path.is_file():
                    raise BrokerError(f"broker {name} {path} is not a file")
                object.__setattr__(self, name, path)
        if not self.controller_port:
            cport = self.port + 1
            if self.port == _default_port():
                cport = _env_int("CALLCOST_BROKER_CONTROLLER_PORT", cport)
            object.__setattr__(self, "controller_port", cport)
        for name in ("port", "controller_port"):
            value = getattr(self, name)
            if not 0 < value < 65536:
                raise BrokerError(f"broker {name} {value} is not a TCP port (1-65535)")
        if self.port == self.controller_port:
            raise BrokerError(f"broker port and controller port are both {self.port}")
        if self.heap_mb < 64:
            raise BrokerError(f"broker heap_mb {self.heap_mb} is too small (at least 64)")

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def security_protocol(self) -> str:
        """The client listener's protocol: SASL_ with users, SSL with a certificate."""
        tls = "SSL" if self.ssl_certfile else "PLAINTEXT"
        return f"SASL_{tls}" if self.sasl_users else tls

    @property
    def secret_file(self) -> Path:
        """The broker's own SASL password (with ``sasl_users`` only)."""
        return self.home / "broker.secret"

    def broker_password(self) -> str:
        """The password of :data:`BROKER_USER`, made once per home and kept."""
        try:
            text = self.secret_file.read_text().strip()
        except OSError:
            text = ""
        if not text:
            self.home.mkdir(parents=True, exist_ok=True)
            text = secrets.token_urlsafe(24)
            fd = os.open(self.secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(text + "\n")
        return text

    def client_kwargs(self) -> dict[str, Any]:
        """kafka-python keyword arguments with which the broker's own user connects
        (empty for a PLAINTEXT broker)."""
        kw: dict[str, Any] = {}
        if self.security_protocol != "PLAINTEXT":
            kw["security_protocol"] = self.security_protocol
        if self.sasl_users:
            kw["sasl_mechanism"] = "PLAIN"
            kw["sasl_plain_username"] = BROKER_USER
            kw["sasl_plain_password"] = self.broker_password()
        if self.ssl_cafile:
            kw["ssl_cafile"] = str(self.ssl_cafile)
        return kw

    @property
    def properties(self) -> Path:
        return self.home / "server.properties"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def log_file(self) -> Path:
        return self.home / "logs" / "broker.out"

    @property
    def pid_file(self) -> Path:
        return self.home / "broker.pid"

    @property
    def lock_file(self) -> Path:
        """Held while the broker of this home is started or stopped."""
        return self.home / "broker.lock"
