"""The local Kafka broker: one combined KRaft node (broker and controller) on 127.0.0.1.

``callcost broker start|stop|status`` and the Python API the tests and the demo use:

- :class:`BrokerConfig` says where a broker lives (its *home*: data, logs, pid file,
  ``server.properties``) and on which ports;
- :func:`start` formats the storage once, launches ``java ... kafka.Kafka`` detached and
  returns only when a real client metadata request succeeds; it is idempotent;
- :func:`stop` stops it (SIGTERM, then SIGKILL), also when its pid file is gone;
- :func:`status` says whether it runs.

The jars come from Maven Central through ``broker/pom.xml`` (:func:`ensure_jars`).

Start-up is kept short with a lean JVM (serial GC, C1 only) and an application
class-data-sharing archive: the first broker that runs without one writes it when it
stops (``broker/target/cds/``), and every later start maps it (about 1.5 s faster).
``CALLCOST_BROKER_CDS=0`` turns that off; ``CALLCOST_BROKER_JAVA_OPTS`` adds JVM options.

``BrokerConfig(sasl_users={"callcost": "secret"})`` (not the default) makes the client
listener SASL_PLAINTEXT with the PLAIN mechanism and those users (JAAS in
``server.properties``, which is then readable by its owner only); the broker itself
uses an extra user of its own (:data:`BROKER_USER`), whose random password is kept in
``home/broker.secret``. ``ssl_certfile``/``ssl_keyfile`` (PEM: the broker's certificate
chain and unencrypted key) make it TLS: SSL, or SASL_SSL with users; ``ssl_cafile`` is
what the broker and its probes trust. The KRaft controller listener stays PLAINTEXT on
127.0.0.1.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from callcost.errors import BrokerError

DEFAULT_PORT = 9092
DEFAULT_HEAP_MB = 512
LOG_TAIL_LINES = 30
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
            raise BrokerError(f"a TLS broker needs ssl_certfile, ssl_keyfile and ssl_cafile; "
                              f"{missing} missing")
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


# --------------------------------------------------------------------------- jars


def _lib_dir(root: Path) -> Path:
    return root / "broker" / "lib"


def ensure_jars(root: Path | None = None) -> Path:
    """Make sure ``broker/lib`` holds the broker's jars; run Maven when it is missing
    or older than ``broker/pom.xml``. Returns the lib folder."""
    root = repo_root() if root is None else Path(root)
    pom = root / "broker" / "pom.xml"
    lib = _lib_dir(root)
    if not pom.exists():
        raise BrokerError(f"{pom} is missing: cannot fetch the Kafka broker jars")
    if _jars_fresh(lib, pom):
        return lib
    lib.mkdir(parents=True, exist_ok=True)
    with _flock(lib / ".lock", time.monotonic() + 900, "broker/lib"):
        if _jars_fresh(lib, pom):  # another process did it while we waited
            return lib
        why = "is missing" if not any(lib.glob("kafka_2.13-*.jar")) else "is older than pom.xml"
        print(
            f"callcost: broker/lib {why}; fetching the Kafka jars with Maven (mvn package)",
            file=sys.stderr,
            flush=True,
        )
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerError("Maven (mvn) is not installed: it fetches the Kafka broker jars")
        result = None
        if (Path.home() / ".m2" / "repository").is_dir():
            result = _run_quiet([mvn, "-o", "-q", "-B", "package"], cwd=pom.parent)
        if result is None or result.returncode != 0:
            result = _run_quiet([mvn, "-q", "-B", "package"], cwd=pom.parent)
        if result.returncode != 0:
            raise BrokerError(
                f"mvn package in {pom.parent} failed (exit {result.returncode}):\n"
                + _tail_text(result.stdout, LOG_TAIL_LINES)
            )
        if not any(lib.glob("kafka_2.13-*.jar")):
            raise BrokerError(f"mvn package ran but {lib} holds no kafka_2.13 jar")
        (lib / ".stamp").touch()
    return lib


def _jars_fresh(lib: Path, pom: Path) -> bool:
    jars = list(lib.glob("*.jar"))
    if not any(j.name.startswith("kafka_2.13-") for j in jars):
        return False
    # The stamp is touched after each successful Maven run; without one (jars copied by
    # hand, or by an older checkout), the newest jar stands for it.
    stamp = lib / ".stamp"
    made = stamp.stat().st_mtime if stamp.exists() else max(j.stat().st_mtime for j in jars)
    return made >= pom.stat().st_mtime


def _run_quiet(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )


# --------------------------------------------------------------------------- processes


def _read_cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone; reap it when it is ours)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X")


def _is_broker_cmd(cmdline: list[str], properties: Path) -> bool:
    return (
        bool(cmdline)
        and "java" in os.path.basename(cmdline[0])
        and "kafka.Kafka" in cmdline
        and str(properties) in cmdline
    )


def _find_broker_pids(properties: Path) -> list[int]:
    """Every live java broker whose command line names this ``server.properties``."""
    me = os.getpid()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid != me and _is_broker_cmd(_read_cmdline(pid), properties) and _alive(pid):
            found.append(pid)
    return sorted(found)


def _broker_pids(cfg: BrokerConfig) -> list[int]:
    """The pid file's broker (when it is still this home's broker) and any other one."""
    pids = set(_find_broker_pids(cfg.properties))
    pid = _read_pid(cfg)
    if pid and _alive(pid) and _is_broker_cmd(_read_cmdline(pid), cfg.properties):
        pids.add(pid)
    return sorted(pids)


def _read_pid(cfg: BrokerConfig) -> int | None:
    try:
        return int(cfg.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def _write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)  # also when it existed with another mode
    os.replace(tmp, path)


@contextlib.contextmanager
def _flock(path: Path, deadline: float, what: str) -> Iterator[None]:
    """An exclusive lock on ``path`` so that two processes do not start one broker twice."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise BrokerError(f"{what} is locked by another process ({path})") from None
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the JVM does
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def _port_owner(port: int) -> tuple[int, str] | None:
    """(pid, command line) of the process listening on ``port``, when we can see it."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{cols[9]}]")
    if not inodes:
        return None
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in os.scandir(f"/proc/{entry.name}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(fd.path) in inodes:
                        pid = int(entry.name)
                        return pid, " ".join(_read_cmdline(pid))[:300]
    return None


def _check_ports(cfg: BrokerConfig) -> None:
    for port, what in ((cfg.port, "port"), (cfg.controller_port, "controller port")):
        if not _port_in_use(port):
            continue
        owner = _port_owner(port)
        who = "another process"
        if owner:
            pid, cmd = owner
            kind = "another Kafka broker" if "kafka.Kafka" in cmd else "another process"
            who = f"{kind} (pid {pid}: {cmd})"
        env = "CALLCOST_BROKER_PORT" if what == "port" else "CALLCOST_BROKER_CONTROLLER_PORT"
        raise BrokerError(
            f"cannot start the broker of {cfg.home}: its {what} 127.0.0.1:{port} is already "
            f"taken by {who}; stop that or choose another {what} (--{what.replace(' ', '-')} "
            f"or {env})"
        )


# --------------------------------------------------------------------------- logs


def _tail_text(text: str, n: int) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return "\n".join(lines[-n:])


def _log_tail(path: Path, n: int = LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode(errors="replace")
    except OSError:
        return f"(no log at {path})"
    # Kafka prints its configuration indented, one key a line: keep the log lines.
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("\t")]
    return "\n".join(lines[-n:]) or f"({path} is empty)"


# --------------------------------------------------------------------------- java


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise BrokerError("java is not installed (the broker needs Java 17 or later)")
    return java


def _jvm_base(cfg: BrokerConfig, heap_mb: int) -> list[str]:
    return [
        _java(),
        f"-Xms{min(256, heap_mb)}m",
        f"-Xmx{heap_mb}m",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-XX:-UsePerfData",
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        "-Dorg.slf4j.simpleLogger.showDateTime=true",
        "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSS",
        f"-Dkafka.logs.dir={cfg.home / 'logs'}",
    ]


def _classpath(cfg: BrokerConfig) -> list[str]:
    return ["-cp", str(_lib_dir(cfg.root) / "*")]


def _sasl_properties(cfg: BrokerConfig) -> dict[str, str]:
    """The SASL_PLAINTEXT listener's PLAIN users, in the listener's JAAS configuration:
    ``username``/``password`` is what the broker itself logs in as, each ``user_NAME``
    a user it accepts (https://kafka.apache.org/documentation/#security_sasl_plain)."""
    users = {BROKER_USER: cfg.broker_password(), **cfg.sasl_users}
    jaas = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{BROKER_USER}" password="{users[BROKER_USER]}" '
        + " ".join(f'user_{name}="{password}"' for name, password in users.items())
        + ";"
    )
    return {
        "sasl.enabled.mechanisms": "PLAIN",
        "sasl.mechanism.inter.broker.protocol": "PLAIN",
        f"listener.name.{cfg.security_protocol.lower()}.plain.sasl.jaas.config": jaas,
    }


def _ssl_properties(cfg: BrokerConfig) -> dict[str, str]:
    """PEM key and certificate store, in one file of the home that only its owner reads
    (https://kafka.apache.org/documentation/#security_ssl, KIP-651)."""
    assert cfg.ssl_keyfile and cfg.ssl_certfile and cfg.ssl_cafile
    keystore = cfg.home / "keystore.pem"
    _write_atomic(keystore, cfg.ssl_keyfile.read_text() + cfg.ssl_certfile.read_text(), 0o600)
    return {
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(keystore),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(cfg.ssl_cafile),
        "ssl.client.auth": "none",
    }


def _server_properties(cfg: BrokerConfig) -> str:
    name = cfg.security_protocol  # the client listener's name is its protocol's
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{cfg.controller_port}",
        "listeners": f"{name}://127.0.0.1:{cfg.port},CONTROLLER://127.0.0.1:{cfg.controller_port}",
        "advertised.listeners": f"{name}://127.0.0.1:{cfg.port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": name,
        "listener.security.protocol.map": f"{name}:{name},CONTROLLER:PLAINTEXT",
        "log.dirs": str(cfg.data_dir),
        "num.partitions": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "auto.create.topics.enable": "true",
        "delete.topic.enable": "true",
        "group.initial.rebalance.delay.ms": "0",
        # Internal topics: one replica, and few partitions (the default 50 makes the first
        # consumer group wait while 50 partitions are created).
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "share.coordinator.state.topic.num.partitions": "4",
        # A small machine: the cleaner's default 128 MB buffer is most of the heap.
        "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
        "num.network.threads": "2",
        "num.io.threads": "4",
    }
    if cfg.sasl_users:
        props.update(_sasl_properties(cfg))
    if cfg.ssl_certfile:
        props.update(_ssl_properties(cfg))
    head = f"# Written by `callcost broker start` for {cfg.home}; rewritten at every start.\n"
    return head + "".join(f"{k}={v}\n" for k, v in props.items())


def _format_storage(cfg: BrokerConfig, cds_flags: list[str]) -> None:
    """Format the data folder once; the cluster id is kept in ``home/cluster.id``."""
    if (cfg.data_dir / "meta.properties").exists():
        return
    id_file = cfg.home / "cluster.id"
    cluster_id = id_file.read_text().strip() if id_file.exists() else ""
    if not cluster_id:
        cluster_id = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
        _write_atomic(id_file, cluster_id + "\n")
    out = cfg.home / "logs" / "format.out"
    cmd = [
        *_jvm_base(cfg, 256),
        *[f for f in cds_flags if f.startswith("-XX:SharedArchiveFile=")],
        *_classpath(cfg),
        "kafka.tools.StorageTool",
        "format",
        "-t",
        cluster_id,
        "-c",
        str(cfg.properties),
        "--ignore-formatted",
    ]
    with out.open("wb") as f:
        rc = subprocess.run(
            cmd, cwd=cfg.home, stdin=subprocess.DEVNULL, stdout=f, stderr=f, check=False
        ).returncode
    if rc != 0:
        raise BrokerError(
            f"formatting the broker storage in {cfg.data_dir} failed (exit {rc}); "
            f"last lines of {out}:\n{_log_tail(out)}"
        )


# Class-data sharing: a dynamic archive of the classes the broker loads, written by the
# first broker that stops gracefully, mapped by every later start.


def _cds_dir(cfg: BrokerConfig) -> Path:
    return cfg.root / "broker" / "target" / "cds"


def _cds_key(cfg: BrokerConfig) -> str:
    h = hashlib.sha1()
    java = Path(_java()).resolve()
    h.update(f"{java}:{java.stat().st_mtime_ns}\n".encode())
    for jar in sorted(_lib_dir(cfg.root).glob("*.jar")):
        st = jar.stat()
        h.update(f"{jar.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _cds_pending(cfg: BrokerConfig) -> Path:
    return cfg.home / "cds-pending.json"


def _cds_flags(cfg: BrokerConfig) -> list[str]:
    if os.environ.get("CALLCOST_BROKER_CDS", "1").strip().lower() in ("0", "false", "no", "off"):
        return []
    cds = _cds_dir(cfg)
    key = _cds_key(cfg)
    final = cds / f"broker-{key}.jsa"
    if final.exists():
        return [f"-XX:SharedArchiveFile={final}", "-Xshare:auto"]
    cds.mkdir(parents=True, exist_ok=True)
    owner = cds / f"broker-{key}.owner"
    with contextlib.suppress(OSError):
        other = Path(owner.read_text().strip())
        if other != cfg.home and _find_broker_pids(other / "server.properties"):
            return []  # another broker is already making it
    home_hash = hashlib.sha1(str(cfg.home).encode()).hexdigest()[:8]
    tmp = cds / f"broker-{key}.{home_hash}.tmp"
    tmp.unlink(missing_ok=True)
    _write_atomic(owner, str(cfg.home))
    pending = {"tmp": str(tmp), "final": str(final), "owner": str(owner)}
    _write_atomic(_cds_pending(cfg), json.dumps(pending))
    return [f"-XX:ArchiveClassesAtExit={tmp}"]


def _cds_finish(cfg: BrokerConfig, graceful: bool) -> None:
    """After the broker exited: keep the archive it wrote, if it exited cleanly."""
    try:
        pending = json.loads(_cds_pending(cfg).read_text())
    except (OSError, ValueError):
        return
    tmp, final, owner = Path(pending["tmp"]), Path(pending["final"]), Path(pending["owner"])
    with contextlib.suppress(OSError):
        if graceful and tmp.exists() and tmp.stat().st_size > 0:
            os.replace(tmp, final)
    tmp.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        if owner.read_text().strip() == str(cfg.home):
            owner.unlink()
    _cds_pending(cfg).unlink(missing_ok=True)


# --------------------------------------------------------------------------- readiness


def _tcp_open(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
        return True
    except OSError:
        return False


def probe(
    bootstrap: str, timeout_s: float = 3.0, client_kwargs: Mapping[str, Any] | None = None
) -> bool:
    """True when ``bootstrap`` answers a metadata request that lists a live broker.

    ``client_kwargs``: kafka-python security settings (see
    :meth:`BrokerConfig.client_kwargs`). Answers False at once when nothing listens on
    the (first) bootstrap address."""
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    try:
        if not _tcp_open(host.strip("[]") or "127.0.0.1", int(port)):
            return False
    except ValueError:
        pass  # not host:port; let the client judge it
    from kafka import KafkaAdminClient

    ms = max(500, int(timeout_s * 1000))
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="callcost-broker-probe",
            request_timeout_ms=ms,
            bootstrap_timeout_ms=ms,
            reconnect_backoff_max_ms=500,
            **(client_kwargs or {}),
        )
    except Exception:
        return False
    try:
        return bool(admin.describe_cluster().get("brokers"))
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            admin.close()


def _wait_ready(
    cfg: BrokerConfig, pid: int, deadline: float, proc: subprocess.Popen[bytes] | None
) -> None:
    while True:
        exited = proc.poll() if proc is not None else (None if _alive(pid) else "?")
        if exited is not None:
            raise BrokerError(
                f"the broker of {cfg.home} (pid {pid}) exited with code {exited} while "
                f"starting; last lines of {cfg.log_file}:\n{_log_tail(cfg.log_file)}"
            )
        left = deadline - time.monotonic()
        if probe(cfg.bootstrap, min(5.0, max(0.5, left)), cfg.client_kwargs()):
            return
        if time.monotonic() > deadline:
            raise BrokerError(
                f"the broker of {cfg.home} (pid {pid}) did not answer on {cfg.bootstrap} in "
                f"time; last lines of {cfg.log_file}:\n{_log_tail(cfg.log_file)}"
            )
        time.sleep(0.05)


def _running_port(cfg: BrokerConfig) -> int | None:
    """The client port in the home's ``server.properties`` (what a running broker uses)."""
    try:
        text = cfg.properties.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("advertised.listeners="):
            with contextlib.suppress(ValueError):
                return int(line.rsplit(":", 1)[1])
    return None


# --------------------------------------------------------------------------- API


def start(cfg: BrokerConfig, timeout_s: float = 90, *, fresh: bool = False) -> float:
    """Start the broker of ``cfg.home`` unless it already runs; return when a client's
    metadata request succeeds. Returns the seconds it took.

    ``fresh``: when the broker has to be started, wipe its storage first (topics,
    offsets, groups); a broker that already runs is left as it is."""
    t0 = time.monotonic()
    deadline = t0 + timeout_s
    ensure_jars(cfg.root)
    cfg.home.mkdir(parents=True, exist_ok=True)
    with _flock(cfg.home / "broker.lock", deadline, f"the broker home {cfg.home}"):
        running = _broker_pids(cfg)
        if running:
            pid = running[0]
            port = _running_port(cfg)
            if port is not None and port != cfg.port:
                raise BrokerError(
                    f"the broker of {cfg.home} already runs (pid {pid}) on port {port}, "
                    f"not {cfg.port}: stop it first (callcost broker stop)"
                )
            _write_atomic(cfg.pid_file, f"{pid}\n")
            _wait_ready(cfg, pid, deadline, None)
            return time.monotonic() - t0

        cfg.pid_file.unlink(missing_ok=True)
        _cds_finish(cfg, graceful=False)  # a stale archive in progress from a crashed run
        _check_ports(cfg)
        (cfg.home / "logs").mkdir(exist_ok=True)
        if fresh and cfg.data_dir.exists():
            shutil.rmtree(cfg.data_dir)
        cfg.data_dir.mkdir(exist_ok=True)
        # with SASL users it holds their passwords: its owner alone reads it
        _write_atomic(cfg.properties, _server_properties(cfg), 0o600 if cfg.sasl_users else 0o644)
        cds_flags = _cds_flags(cfg)
        _format_storage(cfg, cds_flags)

        if cfg.log_file.exists():
            os.replace(cfg.log_file, cfg.log_file.with_name("broker.out.1"))
        extra = shlex.split(os.environ.get("CALLCOST_BROKER_JAVA_OPTS", ""))
        cmd = [
            *_jvm_base(cfg, cfg.heap_mb),
            *cds_flags,
            *extra,
            *_classpath(cfg),
            "kafka.Kafka",
            str(cfg.properties),
        ]
        with cfg.log_file.open("ab") as out:
            proc = subprocess.Popen(
                cmd,
                cwd=cfg.home,  # a JVM crash report lands here, not in the work tree
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        _write_atomic(cfg.pid_file, f"{proc.pid}\n")
        try:
            _wait_ready(cfg, proc.pid, deadline, proc)
        except BaseException:
            _terminate([proc.pid], 10)
            cfg.pid_file.unlink(missing_ok=True)
            _cds_finish(cfg, graceful=False)
            raise
    return time.monotonic() - t0


def _terminate(pids: list[int], timeout_s: float) -> bool:
    """SIGTERM, wait, then SIGKILL. True when every process ended on SIGTERM."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [p for p in pids if _alive(p)]
    if not left:
        return True
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in left) and time.monotonic() < deadline:
        time.sleep(0.05)
    still = [p for p in left if _alive(p)]
    if still:
        raise BrokerError(f"broker process(es) {still} survived SIGKILL")
    return False


def stop(cfg: BrokerConfig, timeout_s: float = 30) -> list[int]:
    """Stop every broker of ``cfg.home``: the pid file's and any other java process that
    runs this home's ``server.properties``. Returns the pids stopped (empty: none ran)."""
    deadline = time.monotonic() + timeout_s
    lock = (
        _flock(cfg.home / "broker.lock", deadline, f"the broker home {cfg.home}")
        if cfg.home.is_dir()
        else contextlib.nullcontext()
    )
    with lock:
        pids = _broker_pids(cfg)
        graceful = _terminate(pids, max(1.0, deadline - time.monotonic())) if pids else True
        if cfg.home.is_dir():
            cfg.pid_file.unlink(missing_ok=True)
            if pids:
                _cds_finish(cfg, graceful)
    return pids


def status(cfg: BrokerConfig, check: bool = True) -> dict[str, object]:
    """``running``, ``pid``, ``bootstrap``, ``home`` and (with ``check``) whether it
    ``answers`` a metadata request."""
    pids = _broker_pids(cfg)
    port = (_running_port(cfg) if pids else None) or cfg.port
    bootstrap = f"127.0.0.1:{port}"
    info: dict[str, object] = {
        "running": bool(pids),
        "pid": pids[0] if pids else None,
        "bootstrap": bootstrap,
        "home": str(cfg.home),
    }
    if check:
        info["answers"] = bool(pids) and probe(bootstrap, 3.0, cfg.client_kwargs())
    return info


# --------------------------------------------------------------------------- command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("start", "stop", "status"))
    parser.add_argument(
        "--home",
        type=Path,
        help="folder of the broker's data, logs and pid file "
        "(default: CALLCOST_BROKER_DIR or var/broker)",
    )
    parser.add_argument(
        "--port", type=int, help="client port (default: CALLCOST_BROKER_PORT or 9092)"
    )
    parser.add_argument(
        "--controller-port",
        type=int,
        help="KRaft controller port (default: CALLCOST_BROKER_CONTROLLER_PORT or port + 1)",
    )
    parser.add_argument("--heap-mb", type=int, help="maximum Java heap in MB (default 512)")
    parser.add_argument(
        "--timeout", type=float, help="seconds to wait (default: 90 to start, 30 to stop)"
    )


def config_from_args(args: argparse.Namespace) -> BrokerConfig:
    kw: dict[str, object] = {}
    if getattr(args, "home", None) is not None:
        kw["home"] = args.home
    if getattr(args, "port", None) is not None:
        kw["port"] = args.port
    if getattr(args, "controller_port", None) is not None:
        kw["controller_port"] = args.controller_port
    if getattr(args, "heap_mb", None) is not None:
        kw["heap_mb"] = args.heap_mb
    return BrokerConfig(**kw)  # type: ignore[arg-type]


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    if args.action == "start":
        before = _broker_pids(cfg)
        took = start(cfg, timeout_s=args.timeout or 90)
        pid = _read_pid(cfg)
        verb = "already running" if before else f"started in {took:.1f} s"
        print(f"broker {verb} at {cfg.bootstrap} (pid {pid}, home {cfg.home})")
    elif args.action == "stop":
        pids = stop(cfg, timeout_s=args.timeout or 30)
        if pids:
            print(f"broker stopped (pid {', '.join(map(str, pids))}, home {cfg.home})")
        else:
            print(f"no broker running (home {cfg.home})")
    else:
        print(json.dumps(status(cfg), sort_keys=True))
    return 0
