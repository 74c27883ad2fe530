"""Kafka security (issue 6, item 6): ``[kafka]`` and ``CALLCOST_KAFKA_*`` reach every
client of every command.

The first half checks the settings and the arguments built for each library without a
broker. The second half runs a dedicated broker with a SASL_PLAINTEXT listener (PLAIN;
ports 39590-39599, home under a tmp dir): topics, produce, worker and gateway with the
credentials from the environment (the gateway's user name from a ``[kafka]`` file) must
give the edge vector's figures at its last instant and its alerts, as ``expected.json``
says; every command given a wrong password must stop quickly with a message naming the
user and the address; and no password may appear in anything a command prints.
"""

from __future__ import annotations

import json
import os
import secrets
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from callcost import broker, broker_config, broker_probe, broker_process, broker_properties
from callcost import kafka_client as kc
from callcost.errors import BrokerError, ConfigError
from callcost.streams.config import KafkaSettings, load_settings, parse_settings
from tests.support.gateway_process import get_json
from tests.support.ports import free_port
from tests.support.processes import check_running, log_tail, log_text, run_cli, spawn, stop
from tests.support.tools import openssl
from tests.vectorcheck import VECTORS, alert_mismatches, expected, figure_mismatches

#: client ports of the SASL brokers (controller: the next port), the first one free:
#: another test's thousands of client connections may hold one as a local port
SASL_PORTS = (39590, 39592, 39596)
SASL_SSL_PORTS = (39594, 39598)
NOTHING_LISTENS = 39589
SASL_HOME: list[Path] = []  # the module broker's home, once started
USER = "callcost"
KAFKA_ENV = (
    "CALLCOST_KAFKA_SECURITY_PROTOCOL",
    "CALLCOST_KAFKA_SASL_MECHANISM",
    "CALLCOST_KAFKA_SASL_USERNAME",
    "CALLCOST_KAFKA_SASL_PASSWORD",
    "CALLCOST_KAFKA_SSL_CAFILE",
    "CALLCOST_KAFKA_SSL_CERTFILE",
    "CALLCOST_KAFKA_SSL_KEYFILE",
    "CALLCOST_KAFKA_SSL_CHECK_HOSTNAME",
)


@pytest.fixture(autouse=True)
def _no_kafka_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees only the Kafka environment it sets itself."""
    for var in (*KAFKA_ENV, "CALLCOST_CONFIG"):
        monkeypatch.delenv(var, raising=False)


# --------------------------------------------------------------------------- settings


def test_defaults_are_plaintext_without_credentials() -> None:
    k = load_settings(None).kafka
    assert k == KafkaSettings()
    assert k.security_protocol == "PLAINTEXT" and not k.uses_sasl and not k.uses_ssl
    assert kc.aiokafka_kwargs(k) == {"security_protocol": "PLAINTEXT"}
    assert kc.kafka_python_kwargs(k) == {"security_protocol": "PLAINTEXT"}
    assert kc.faust_kwargs(k) == {}
    assert kc.check("127.0.0.1:1", k) is None  # nothing to check: no connection made


def test_kafka_section_and_environment_over_it(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "ca.pem").write_text("x")
    cfg = tmp_path / "callcost.toml"
    cfg.write_text(
        '[kafka]\nsecurity_protocol = "sasl_ssl"\nsasl_mechanism = "SCRAM-SHA-512"\n'
        'sasl_username = "from-file"\nssl_cafile = "ca.pem"\nssl_check_hostname = false\n'
    )
    monkeypatch.setenv("CALLCOST_KAFKA_SASL_PASSWORD", "pw-in-env")
    k = load_settings(cfg).kafka
    assert k.security_protocol == "SASL_SSL" and k.sasl_mechanism == "SCRAM-SHA-512"
    assert k.sasl_username == "from-file" and k.sasl_password == "pw-in-env"
    assert k.ssl_cafile == str(tmp_path / "ca.pem")  # relative to the file's folder
    assert k.ssl_check_hostname is False
    assert "pw-in-env" not in repr(k) and "pw-in-env" not in repr(load_settings(cfg))
    # the environment wins over the file, key by key
    monkeypatch.setenv("CALLCOST_KAFKA_SASL_USERNAME", "from-env")
    monkeypatch.setenv("CALLCOST_KAFKA_SASL_MECHANISM", "plain")
    monkeypatch.setenv("CALLCOST_KAFKA_SSL_CHECK_HOSTNAME", "true")
    k = load_settings(cfg).kafka
    assert (k.sasl_username, k.sasl_mechanism, k.ssl_check_hostname) == ("from-env", "PLAIN", True)
    assert k.security_protocol == "SASL_SSL"
    # and without any file
    monkeypatch.delenv("CALLCOST_KAFKA_SSL_CHECK_HOSTNAME")
    monkeypatch.setenv("CALLCOST_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    k = load_settings(None).kafka
    assert (k.security_protocol, k.sasl_username, k.sasl_password) == (
        "SASL_PLAINTEXT", "from-env", "pw-in-env"
    )


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[kafka]\nsecurity_protocol = "SASL_PLAINTEXT"\nsasl_username = "u"\n'
         'sasl_password = "hunter2"\n',
         "cfg.toml:4: kafka.sasl_password: a password is never written in the configuration: "
         "set the environment variable CALLCOST_KAFKA_SASL_PASSWORD"),
        ('[kafka]\nsecurity_protocol = "TLS"\n',
         "cfg.toml:2: kafka.security_protocol: unknown security protocol 'TLS' (one of "
         "PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL)"),
        ('[kafka]\nsecurity_protocol = "SASL_PLAINTEXT"\nsasl_mechanism = "GSSAPI"\n'
         'sasl_username = "u"\n',
         "cfg.toml:3: kafka.sasl_mechanism: unknown sasl mechanism 'GSSAPI' (one of PLAIN, "
         "SCRAM-SHA-256, SCRAM-SHA-512)"),
        ('[kafka]\nsecurity_protocol = "SASL_SSL"\n',
         "cfg.toml:2: kafka.security_protocol: SASL_SSL needs a user name: set "
         "kafka.sasl_username or CALLCOST_KAFKA_SASL_USERNAME"),
        ('[kafka]\nsasl_username = "u"\n',
         "cfg.toml:2: kafka.sasl_username: is set but security_protocol is PLAINTEXT: SASL "
         "needs SASL_PLAINTEXT or SASL_SSL"),
        ('[kafka]\nsecurity_protocol = "SASL_PLAINTEXT"\nsasl_username = "u"\n'
         "ssl_check_hostname = false\n",
         "cfg.toml:4: kafka.ssl_check_hostname: is set but security_protocol is "
         "SASL_PLAINTEXT: TLS needs SSL or SASL_SSL"),
        ('[kafka]\nsecurity_protocol = "SSL"\nssl_cafile = "nope.pem"\n',
         "cfg.toml:3: kafka.ssl_cafile: no such file"),
        ('[kafka]\nsecurity_protocol = "SSL"\nssl_check_hostname = "no"\n',
         "cfg.toml:3: kafka.ssl_check_hostname: must be true or false, not 'no'"),
        ('[kafka]\nbootstrap = "x:1"\n', "cfg.toml:2: kafka.bootstrap: unknown key"),
    ],
)
def test_bad_kafka_section_names_file_line_and_key(
    tmp_path: Path, monkeypatch, toml: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cfg.toml").write_text(toml)
    with pytest.raises(ConfigError) as err:
        load_settings("cfg.toml")
    assert str(err.value).startswith(message)
    assert "hunter2" not in str(err.value)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CALLCOST_KAFKA_SECURITY_PROTOCOL": "SASL"},
         "CALLCOST_KAFKA_SECURITY_PROTOCOL: unknown security protocol 'SASL'"),
        ({"CALLCOST_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
         "CALLCOST_KAFKA_SECURITY_PROTOCOL: SASL_SSL needs a user name"),
        ({"CALLCOST_KAFKA_SASL_USERNAME": "u"},
         "CALLCOST_KAFKA_SASL_USERNAME: is set but security_protocol is PLAINTEXT"),
        ({"CALLCOST_KAFKA_SECURITY_PROTOCOL": "SSL", "CALLCOST_KAFKA_SSL_CHECK_HOSTNAME": "maybe"},
         "CALLCOST_KAFKA_SSL_CHECK_HOSTNAME: must be true or false, not 'maybe'"),
        ({"CALLCOST_KAFKA_SECURITY_PROTOCOL": "SSL", "CALLCOST_KAFKA_SSL_KEYFILE": __file__},
         "CALLCOST_KAFKA_SSL_KEYFILE: a private key needs its certificate (ssl_certfile)"),
    ],
)
def test_bad_environment_names_the_variable(monkeypatch, env: dict, message: str) -> None:
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as err:
        parse_settings("[stream]\n", source="x.toml")
    assert str(err.value).startswith(message)


def test_sasl_without_password_fails_naming_the_variable() -> None:
    k = KafkaSettings(security_protocol="SASL_PLAINTEXT", sasl_username="u")
    for build in (kc.aiokafka_kwargs, kc.kafka_python_kwargs, kc.faust_kwargs):
        with pytest.raises(ConfigError, match="CALLCOST_KAFKA_SASL_PASSWORD is not set"):
            build(k)


def test_sasl_plaintext_kwargs_for_each_library() -> None:
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    k = KafkaSettings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256",
                      sasl_username="u", sasl_password="p")
    sasl = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-256",
            "sasl_plain_username": "u", "sasl_plain_password": "p"}
    assert kc.aiokafka_kwargs(k) == sasl
    assert kc.kafka_python_kwargs(k) == sasl
    creds = kc.faust_kwargs(k)["broker_credentials"]
    # what Faust hands to each aiokafka client it makes
    assert credentials_to_aiokafka_auth(creds) == {**sasl, "ssl_context": None}
    assert "p" not in repr(creds).replace("<SASLCredentials: username=u>", "")
    assert kc.describe(k) == "SASL_PLAINTEXT (SCRAM-SHA-256 as 'u')"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run([openssl(), *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate, PEM."""
    d.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
             "ca.pem", "-days", "2", "-subj", "/CN=callcost test CA", cwd=d)
    for name, san in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
                      ("client", "subjectAltName=DNS:callcost-client")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
                 f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
        (d / f"{name}.ext").write_text(san + "\n")
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile",
                 f"{name}.ext", cwd=d)
    return {n: d / n for n in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    openssl()  # fails the test, with how to install it, when there is none
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_ssl_kwargs_for_each_library(pki: dict[str, Path]) -> None:
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    k = KafkaSettings(security_protocol="SSL", ssl_cafile=str(pki["ca.pem"]),
                      ssl_certfile=str(pki["client.pem"]), ssl_keyfile=str(pki["client.key"]),
                      ssl_check_hostname=False)
    assert kc.kafka_python_kwargs(k) == {
        "security_protocol": "SSL", "ssl_cafile": str(pki["ca.pem"]),
        "ssl_certfile": str(pki["client.pem"]), "ssl_keyfile": str(pki["client.key"]),
        "ssl_check_hostname": False,
    }
    kw = kc.aiokafka_kwargs(k)
    assert set(kw) == {"security_protocol", "ssl_context"} and kw["security_protocol"] == "SSL"
    ctx = kw["ssl_context"]
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname is False
    assert [c["subject"] for c in ctx.get_ca_certs()] == [((("commonName", "callcost test CA"),),)]
    auth = credentials_to_aiokafka_auth(kc.faust_kwargs(k)["broker_credentials"])
    assert auth["security_protocol"] == "SSL"
    assert auth["ssl_context"].get_ca_certs() == ctx.get_ca_certs()
    # SASL_SSL: Faust's SASL credentials carry the TLS context and say SASL_SSL
    k2 = KafkaSettings(security_protocol="SASL_SSL", sasl_username="u", sasl_password="p",
                       ssl_cafile=str(pki["ca.pem"]))
    kw2 = kc.aiokafka_kwargs(k2)
    assert kw2["security_protocol"] == "SASL_SSL" and kw2["ssl_context"].check_hostname
    auth2 = credentials_to_aiokafka_auth(kc.faust_kwargs(k2)["broker_credentials"])
    assert auth2["security_protocol"] == "SASL_SSL" and auth2["sasl_plain_password"] == "p"
    assert auth2["ssl_context"].get_ca_certs() == kw2["ssl_context"].get_ca_certs()
    assert kc.kafka_python_kwargs(k2)["ssl_cafile"] == str(pki["ca.pem"])


def test_unusable_ssl_files_are_named(pki: dict[str, Path]) -> None:
    bad = KafkaSettings(security_protocol="SSL", ssl_cafile=str(pki["client.key"]))
    with pytest.raises(ConfigError, match=r"kafka\.ssl_cafile .*client\.key.*not usable"):
        kc.aiokafka_kwargs(bad)
    mismatch = KafkaSettings(security_protocol="SSL", ssl_certfile=str(pki["client.pem"]),
                             ssl_keyfile=str(pki["server.key"]))
    with pytest.raises(ConfigError, match=r"client\.pem and .*server\.key: not a usable"):
        kc.kafka_python_kwargs(mismatch)


def test_faust_broker_url() -> None:
    assert kc.faust_broker_url("a:1, b:2") == "kafka://a:1;kafka://b:2"
    with pytest.raises(ConfigError):
        kc.faust_broker_url(" , ")


def test_compose_passes_the_kafka_environment_through() -> None:
    """docker-compose.yml hands each CALLCOST_KAFKA_* of the shell (or .env) to every
    callcost service, empty when unset, and holds no password itself."""
    import yaml

    compose = yaml.safe_load((Path(__file__).parent.parent / "docker-compose.yml").read_text())
    for name in ("topics", "worker", "gateway", "simulator"):
        env = compose["services"][name]["environment"]
        for var in KAFKA_ENV:
            assert env[var] == f"${{{var}:-}}", (name, var)


def test_empty_environment_variables_count_as_unset(monkeypatch) -> None:
    for var in KAFKA_ENV:
        monkeypatch.setenv(var, "")
    assert load_settings(None).kafka == KafkaSettings()


# --------------------------------------------------------------------------- SASL broker


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A broker whose only client listener is SASL_PLAINTEXT; yields (bootstrap,
    password of USER)."""
    password = "pw-" + secrets.token_hex(12)
    home = tmp_path_factory.mktemp("sasl-broker")
    port = free_pair(SASL_PORTS)
    cfg = broker_config.BrokerConfig(home=home, port=port, controller_port=port + 1,
                              sasl_users={USER: password})
    assert password not in repr(cfg)
    SASL_HOME[:] = [home]
    try:
        broker.start(cfg, timeout_s=180, fresh=True)
        yield cfg.bootstrap, password
    finally:
        broker.stop(cfg)


@pytest.fixture(scope="module")
def sasl_ssl_broker(
    tmp_path_factory: pytest.TempPathFactory, pki: dict[str, Path]
) -> Iterator[tuple[str, str]]:
    """A broker whose only client listener is SASL_SSL (PLAIN over TLS, the certificate
    of ``pki``); yields (bootstrap, password of USER)."""
    password = "pw-" + secrets.token_hex(12)
    port = free_pair(SASL_SSL_PORTS)
    cfg = broker_config.BrokerConfig(
        home=tmp_path_factory.mktemp("sasl-ssl-broker"), port=port,
        controller_port=port + 1, sasl_users={USER: password},
        ssl_certfile=pki["server.pem"], ssl_keyfile=pki["server.key"], ssl_cafile=pki["ca.pem"],
    )  # fmt: skip
    assert cfg.security_protocol == "SASL_SSL"
    try:
        broker.start(cfg, timeout_s=180, fresh=True)
        yield cfg.bootstrap, password
    finally:
        broker.stop(cfg)


def free_pair(ports: tuple[int, ...]) -> int:
    for port in ports:
        if not broker_process.port_in_use(port) and not broker_process.port_in_use(port + 1):
            return port
    pytest.fail(f"none of the ports {ports} (and the next ones) is free")


def _env(password: str | None, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in KAFKA_ENV and k != "CALLCOST_CONFIG"}
    env.update(CALLCOST_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
               CALLCOST_KAFKA_SASL_USERNAME=USER)
    env.update(more)
    if password is not None:
        env["CALLCOST_KAFKA_SASL_PASSWORD"] = password
    return env


def _post(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=15) as r:
        return r.status, json.loads(r.read())


def test_sasl_broker_refuses_clients_without_credentials(sasl_broker) -> None:
    bootstrap, password = sasl_broker
    assert broker_probe.probe(bootstrap, 3.0, None) is False  # PLAINTEXT is not let in
    assert broker_probe.probe(bootstrap, 3.0, {"security_protocol": "SASL_PLAINTEXT",
                                         "sasl_mechanism": "PLAIN",
                                         "sasl_plain_username": USER,
                                         "sasl_plain_password": password})
    k = KafkaSettings(security_protocol="SASL_PLAINTEXT", sasl_username=USER,
                      sasl_password=password)
    assert kc.check(bootstrap, k) is None
    note = kc.check(f"127.0.0.1:{NOTHING_LISTENS}", k, 2)
    assert note is not None and note.startswith("no Kafka broker answered")
    home = SASL_HOME[0]
    # server.properties holds the users' passwords: its owner alone may read it
    assert ((home / "server.properties").stat().st_mode & 0o777) == 0o600
    assert password in (home / "server.properties").read_text()
    # and the broker, which prints its configuration, does not print them
    log = (home / "logs" / "broker.out").read_text(errors="replace")
    assert "inter.broker.listener.name = SASL_PLAINTEXT" in log and password not in log


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_every_command_with_sasl_credentials(
    protocol: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """topics, produce, worker and gateway through SASL_PLAINTEXT and SASL_SSL: the
    edge vector's figures and alerts arrive at the gateway as expected.json says."""
    tls: dict[str, str] = {}
    if protocol == "SASL_SSL":
        bootstrap, password = request.getfixturevalue("sasl_ssl_broker")
        tls["CALLCOST_KAFKA_SSL_CAFILE"] = str(request.getfixturevalue("pki")["ca.pem"])
    else:
        bootstrap, password = request.getfixturevalue("sasl_broker")
    env = _env(password, CALLCOST_KAFKA_SECURITY_PROTOCOL=protocol, **tls)
    edge = VECTORS / "edge"
    outputs: list[str] = []

    topics = run_cli("topics", "--bootstrap", bootstrap, "--partitions", "2", env=env)
    outputs += [topics.stdout, topics.stderr]
    assert topics.returncode == 0, topics.stderr
    assert "cost-figures: ready (compact)" in topics.stdout
    produced = run_cli("produce", str(edge / "events.jsonl"), "--bootstrap", bootstrap, env=env)
    outputs += [produced.stdout, produced.stderr]
    assert produced.returncode == 0, produced.stderr
    assert "sent 43 messages to call-events" in produced.stderr

    # the gateway takes its user name from a [kafka] file; the password only from env
    gw_config = tmp_path / "gateway.toml"
    gw_config.write_text((edge / "callcost.toml").read_text()
                         + f'\n[kafka]\nsecurity_protocol = "{protocol}"\n'
                           f'sasl_username = "{USER}"\n'
                         + "".join(f'ssl_cafile = "{ca}"\n' for ca in tls.values()))
    gw_env = {k: v for k, v in env.items() if k not in ("CALLCOST_KAFKA_SASL_USERNAME",
                                                          "CALLCOST_KAFKA_SSL_CAFILE")}
    gw_env["CALLCOST_KAFKA_SECURITY_PROTOCOL"] = ""  # empty: the file's value counts
    port = free_port()
    worker = spawn([
        "worker", "--bootstrap", bootstrap, "--config", str(edge / "callcost.toml"),
        "--group", f"sasl-{secrets.token_hex(4)}", "--data-dir", str(tmp_path / "wd"),
        "--batch-ms", "50"], tmp_path / "worker.log", env=env)
    gateway = spawn([
        "gateway", "--bootstrap", bootstrap, "--port", str(port),
        "--config", str(gw_config)], tmp_path / "gateway.log", env=gw_env)
    base = f"http://127.0.0.1:{port}"
    try:
        want = expected("edge")["centres"]["edge"]
        last = want["last_instant"]
        deadline = time.monotonic() + 150
        figs: list = []
        alerts: list = []
        while True:
            check_running((worker, gateway))
            try:
                figs = get_json(f"{base}/api/figures?centre=edge")["figures"]
                alerts = get_json(f"{base}/api/alerts?centre=edge&state=all")["alerts"]
            except OSError:
                figs = []
            if (figs and all(f["as_of"] == last for f in figs)
                    and len(alerts) >= len(want["alerts"])):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"no figures at {last} after 150 s: {len(figs)} figures; worker:\n"
                            + log_tail(worker))
            time.sleep(0.3)
        at_last = [f for f in want["figures"] if f["as_of"] == last]
        assert at_last and figure_mismatches(figs, at_last) == []
        assert alert_mismatches(alerts, want["alerts"]) == []
        # the gateway's producer too: a snooze is written to the control topic (acks=all)
        first = want["alerts"][0]
        status, body = _post(f"{base}/api/snoozes", {
            "centre": "edge", "rule": first["rule"], "key": first["key"], "for_s": 600,
            "by": "tester"})
        assert status == 200 and body["snooze"]["by"] == "tester"
        assert get_json(f"{base}/api/snoozes?centre=edge")["snoozes"] == [body["snooze"]]
    finally:
        stop(worker)
        stop(gateway)
    logs = [log_text(p) for p in (worker, gateway)]
    assert f"{protocol} (PLAIN as 'callcost')" in logs[0]  # the worker says how it connects
    for text in outputs + logs:
        assert password not in text


@pytest.mark.parametrize("command", ["topics", "produce", "simulate", "worker", "gateway"])
def test_wrong_password_stops_each_command_with_a_clear_message(
    sasl_broker, tmp_path: Path, command: str
) -> None:
    bootstrap, password = sasl_broker
    wrong = "wrong-" + secrets.token_hex(8)
    args = {
        "topics": ["topics"],
        "produce": ["produce", str(VECTORS / "edge" / "events.jsonl")],
        "simulate": ["simulate", "--duration", "5"],
        "worker": ["worker", "--data-dir", str(tmp_path / "wd"), "--group", "sasl-wrong"],
        "gateway": ["gateway", "--port", str(free_port())],
    }[command]
    t0 = time.monotonic()
    out = run_cli(*args, "--bootstrap", bootstrap, env=_env(wrong), timeout_s=120)
    took = time.monotonic() - t0
    text = out.stdout + out.stderr
    assert out.returncode == 2, text[-3000:]
    assert (f"callcost {command}: Kafka authentication failed for user 'callcost' at "
            f"{bootstrap} (SASL_PLAINTEXT, PLAIN)") in out.stderr, text[-3000:]
    assert "Traceback" not in text
    assert wrong not in text and password not in text
    # no hang: well before the clients' own time-outs (the worker waits up to 180 s)
    assert took < 60, f"{command} took {took:.0f} s to give up"


def test_untrusted_broker_certificate_is_named(sasl_ssl_broker, tmp_path: Path) -> None:
    bootstrap, password = sasl_ssl_broker
    other = make_pki(tmp_path / "other")  # a CA that did not sign the broker's certificate
    env = _env(password, CALLCOST_KAFKA_SECURITY_PROTOCOL="SASL_SSL",
               CALLCOST_KAFKA_SSL_CAFILE=str(other["ca.pem"]))
    out = run_cli("topics", "--bootstrap", bootstrap, env=env)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert (f"callcost topics: TLS to the Kafka broker at {bootstrap}: its certificate is not "
            "trusted (unable to get local issuer certificate)") in out.stderr, out.stderr
    assert password not in out.stdout + out.stderr


def test_missing_password_stops_before_connecting(sasl_broker) -> None:
    bootstrap, _ = sasl_broker
    out = run_cli("topics", "--bootstrap", bootstrap, env=_env(None))
    assert out.returncode == 2
    assert out.stderr.strip().endswith(
        "callcost topics: CALLCOST_KAFKA_SASL_PASSWORD is not set: the SASL user 'callcost' "
        "(SASL_PLAINTEXT, PLAIN) needs its password there"
    )


def test_sasl_users_are_checked_and_never_shown(tmp_path: Path) -> None:
    with pytest.raises(BrokerError, match="SASL user name 'a b'"):
        broker_config.BrokerConfig(home=tmp_path, port=39592, sasl_users={"a b": "x"})
    with pytest.raises(BrokerError, match="password of SASL user 'u'"):
        broker_config.BrokerConfig(home=tmp_path, port=39592, sasl_users={"u": 'a"b'})
    cfg = broker_config.BrokerConfig(home=tmp_path, port=39592, sasl_users={"u": "secret-1"})
    assert "secret-1" not in repr(cfg) and cfg.security_protocol == "SASL_PLAINTEXT"
    text = broker_properties.server_properties(cfg)
    assert "listeners=SASL_PLAINTEXT://127.0.0.1:39592,CONTROLLER://127.0.0.1:39593" in text
    protocols = "SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT"
    assert f"listener.security.protocol.map={protocols}" in text
    assert "inter.broker.listener.name=SASL_PLAINTEXT" in text
    assert 'user_u="secret-1"' in text and f'username="{broker_config.BROKER_USER}"' in text
    assert (cfg.secret_file.stat().st_mode & 0o777) == 0o600
    assert broker_config.BrokerConfig(home=tmp_path, port=39592).security_protocol == "PLAINTEXT"
