"""Access control on the gateway: tokens and roles, origins, TLS, and no token in a log.

Real gateways on port 0 (``tests.test_gateway.Running``, without Kafka: the stores are
fed through the readers' entry points), real HTTP and websocket clients; the log test
runs ``callcost gateway`` as a subprocess at DEBUG; the page test drives Chromium.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import os
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin, Subprotocol

from callcost.errors import ConfigError
from callcost.streams.config import load_settings, parse_settings
from callcost.web import access as a
from callcost.web.gateway import Gateway
from tests.support.gateway_client import Running, ask
from tests.support.messages import T0, alert, figures_value
from tests.support.ports import answers, free_port
from tests.support.processes import spawn, stop
from tests.support.tools import CHROMIUM_ARGS, chromium, openssl
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent
ROLES = ("wallboard", "supervisor", "admin", "metrics")


def make_token(label: str) -> str:
    """A fresh random token whose text tells which one it is in a failure message."""
    import secrets

    return f"{label}-{secrets.token_urlsafe(24)}"


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def tokens_toml(tokens: dict[str, str]) -> str:
    """``[[gateway.tokens]]`` with one token per role (``tokens``: role -> token)."""
    return "".join(
        f'[[gateway.tokens]]\nname = "{role}-1"\nrole = "{role}"\nsha256 = "{sha(tok)}"\n\n'
        for role, tok in tokens.items()
    )


@pytest.fixture(scope="module")
def tokens() -> dict[str, str]:
    return {role: make_token(role) for role in ROLES}


@pytest.fixture(scope="module")
def gw(tokens: dict[str, str]) -> Iterator[Running]:
    """A gateway with one token per role, the figures of prg and one firing alert."""
    running = Running(settings=parse_settings(tokens_toml(tokens), source="access.toml"))
    try:
        running.figures(figures_value("prg", T0))
        running.alerts(json.dumps(alert(key="billing")).encode())
        yield running
    finally:
        running.close()


# --------------------------------------------------------------------------- clients


def http_request(
    port: int,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    context: ssl.SSLContext | None = None,
) -> tuple[int, dict[str, str], bytes]:
    if context is None:
        conn: http.client.HTTPConnection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def bearer(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


def ws_connect(port: int, token: str | None = None, **kw: Any) -> ClientConnection:
    """A websocket the way a browser opens one: the token as a subprotocol."""
    protocols = [a.SUBPROTOCOL] + ([a.TOKEN_SUBPROTOCOL + token] if token else [])
    return connect(
        f"ws://127.0.0.1:{port}/ws", subprotocols=[Subprotocol(x) for x in protocols], **kw
    )


def reply_to(ws: ClientConnection, request: dict) -> dict:
    """The reply to ``request``, past what subscriptions push meanwhile (a snooze made on
    this connection comes to its own alerts subscription first)."""
    ws.send(json.dumps(request))
    while True:
        message = json.loads(ws.recv(timeout=10))
        if message["type"] not in ("update", "alert", "ack", "snooze"):
            return message


def metrics_of(gw: Running, token: str) -> dict[str, float]:
    status, _, body = http_request(gw.port, "GET", "/metrics", bearer(token))
    assert status == 200, body
    out = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def refused_status(port: int, path: str = "/ws", **kw: Any) -> tuple[int, dict]:
    """The status and JSON body of a refused websocket handshake."""
    with pytest.raises(InvalidStatus) as info, connect(f"ws://127.0.0.1:{port}{path}", **kw):
        pass
    resp = info.value.response
    return resp.status_code, json.loads(resp.body or b"{}")


# --------------------------------------------------------------------------- configuration


def test_config_takes_hashes_and_environment_tokens_never_plain_text() -> None:
    wall = make_token("wall")
    sup = make_token("sup")
    text = (
        '[[gateway.tokens]]\nname = "tv-1"\nrole = "wallboard"\n'
        f'sha256 = "{sha(wall).upper()}"\n\n'
        '[[gateway.tokens]]\nname = "desk"\nrole = "supervisor"\nenv = "CC_TOKEN_DESK"\n\n'
        '[gateway]\norigins = ["https://Wall.Example.com", "http://10.0.0.5:8080"]\n'
    )
    settings = parse_settings(text, source="gw.toml", environ={"CC_TOKEN_DESK": sup})
    t1, t2 = settings.gateway.tokens
    assert (t1.name, t1.role, t1.sha256, t1.env) == (
        "tv-1",
        "wallboard",
        bytes.fromhex(sha(wall)),
        None,
    )
    assert (t2.name, t2.role, t2.sha256, t2.env) == (
        "desk",
        "supervisor",
        bytes.fromhex(sha(sup)),
        "CC_TOKEN_DESK",
    )
    assert settings.gateway.origins == ("https://wall.example.com", "http://10.0.0.5:8080")
    # neither the token nor its hash is shown by the settings' repr
    assert sup not in repr(settings) and sha(sup) not in repr(settings)
    auth = a.Authenticator(settings.gateway.tokens)
    assert auth.authenticate(wall) == a.Principal("tv-1", "wallboard", frozenset({"figures"}))
    assert getattr(auth.authenticate(sup), "role", None) == "supervisor"
    assert auth.authenticate(sup + "x") is None
    assert auth.authenticate(None) is None
    assert a.Authenticator(()).authenticate(None) is a.OPEN


@pytest.mark.parametrize(
    ("body", "environ", "expected"),
    [
        (
            'name = "x"\nrole = "boss"\nsha256 = "{h}"\n',
            {},
            "gw.toml:5: gateway.tokens[0].role: token 'x': unknown role 'boss' "
            "(one of wallboard, supervisor, admin, metrics)",
        ),
        (
            'name = "x"\nrole = "admin"\n',
            {},
            "gw.toml:4: gateway.tokens[0]: token 'x': give exactly one of sha256",
        ),
        (
            'name = "x"\nrole = "admin"\nsha256 = "{h}"\nenv = "CC_T"\n',
            {"CC_T": "y" * 20},
            "gw.toml:6: gateway.tokens[0].sha256: token 'x': give exactly one of",
        ),
        (
            'name = "x"\nrole = "admin"\nenv = "CC_TOKEN_UNSET"\n',
            {},
            "gw.toml:6: gateway.tokens[0].env: token 'x': environment variable "
            "CC_TOKEN_UNSET is not set",
        ),
        (
            'name = "x"\nrole = "admin"\nenv = "CC_T"\n',
            {"CC_T": ""},
            "gw.toml:6: gateway.tokens[0].env: token 'x': environment variable CC_T is empty",
        ),
        (
            'name = "x"\nrole = "admin"\nsha256 = "abc"\n',
            {},
            "gw.toml:6: gateway.tokens[0].sha256: token 'x': must be 64 hex digits",
        ),
        (
            'name = "x"\nrole = "admin"\nsha256 = "{h}"\nsecret = 1\n',
            {},
            "gw.toml:7: gateway.tokens[0].secret: unknown key",
        ),
    ],
)
def test_config_errors_name_file_line_and_key(body: str, environ: dict, expected: str) -> None:
    text = "# tokens\n\n[[gateway.tokens]]\n" + body.replace("{h}", "ab" * 32)
    with pytest.raises(ConfigError) as info:
        parse_settings(text, source="gw.toml", environ=environ)
    assert str(info.value).startswith(expected), str(info.value)


def test_config_errors_never_show_a_token() -> None:
    secret = "s3cret/with+bad=chars-0123456789"
    for body, environ in (
        (f'name = "x"\nrole = "admin"\ntoken = "{secret}"\n', {}),
        ('name = "x"\nrole = "admin"\nenv = "CC_T"\n', {"CC_T": secret}),
        ('name = "x"\nrole = "admin"\nenv = "CC_T"\n', {"CC_T": "short"}),
    ):
        with pytest.raises(ConfigError) as info:
            parse_settings("[[gateway.tokens]]\n" + body, source="gw.toml", environ=environ)
        message = str(info.value)
        assert message.startswith(("gw.toml:4: gateway.tokens[0].token: a token is never",
                                   "gw.toml:4: gateway.tokens[0].env: token 'x': environment "
                                   "variable CC_T must hold 16-512"))  # fmt: skip
        assert secret not in message and "short" not in message


def test_config_refuses_twice_the_same_token_or_name_bad_origins_and_half_tls(
    tmp_path: Path,
) -> None:
    tok = make_token("t")
    twice = (
        f'[[gateway.tokens]]\nname = "a"\nrole = "admin"\nsha256 = "{sha(tok)}"\n'
        '[[gateway.tokens]]\nname = "b"\nrole = "wallboard"\nenv = "CC_T"\n'
    )
    with pytest.raises(
        ConfigError,
        match=r"^gw\.toml:8: gateway\.tokens\[1\]\.env: token 'b' is the same token as tokens\[0\]",
    ):
        parse_settings(twice, source="gw.toml", environ={"CC_T": tok})
    names = twice.replace('name = "b"', 'name = "a"')
    with pytest.raises(
        ConfigError, match=r"^gw\.toml:6: gateway\.tokens\[1\]\.name: token name 'a'"
    ):
        parse_settings(names, source="gw.toml", environ={"CC_T": make_token("u")})
    with pytest.raises(
        ConfigError,
        match=r"^gw\.toml:2: gateway\.origins: 'https://a\.example/path' is not an origin",
    ):
        parse_settings('[gateway]\norigins = ["https://a.example/path"]\n', source="gw.toml")
    with pytest.raises(
        ConfigError,
        match=r"^gw\.toml:2: gateway\.tls_cert: TLS needs both tls_cert and tls_key; "
        r"tls_key is missing",
    ):
        parse_settings('[gateway]\ntls_cert = "c.pem"\n', source="gw.toml")
    cfg = tmp_path / "gw.toml"
    cfg.write_text('[gateway]\ntls_cert = "c.pem"\ntls_key = "k.pem"\n')
    with pytest.raises(
        ConfigError, match=r"gw\.toml:2: gateway\.tls_cert: no such file '.*c\.pem'"
    ):
        load_settings(cfg)


# --------------------------------------------------------------------------- HTTP matrix

#: route -> the roles that may use it (written out here, from the brief, not from the code)
HTTP_ROLES: dict[tuple[str, str], set[str]] = {
    ("GET", "/api/figures"): {"wallboard", "supervisor", "admin"},
    ("GET", "/api/centres"): {"wallboard", "supervisor", "admin"},
    ("GET", "/api/alerts"): {"supervisor", "admin"},
    ("GET", "/api/snoozes"): {"supervisor", "admin"},
    ("POST", "/api/alerts/ack"): {"supervisor", "admin"},
    ("POST", "/api/snoozes"): {"supervisor", "admin"},
    ("GET", "/metrics"): {"admin", "metrics"},
    ("GET", "/api/whoami"): set(ROLES),
}
#: routes anyone may use, token or not
PUBLIC = [("GET", "/healthz"), ("GET", "/wallboard"), ("GET", "/"), ("GET", "/static/token.js")]
#: what an allowed request answers (the ack names an alert that does not exist: 404)
ALLOWED_STATUS = {("POST", "/api/alerts/ack"): 404}
BODIES = {
    "/api/alerts/ack": {"id": "prg/none", "by": "test"},
    "/api/snoozes": {
        "centre": "prg",
        "rule": "queue-15m",
        "key": "billing",
        "for_s": 60,
        "by": "t",
    },
}


@pytest.mark.parametrize("who", [*ROLES, "none", "bad"])
def test_http_role_matrix(gw: Running, tokens: dict[str, str], who: str) -> None:
    token = {"none": None, "bad": make_token("bad")}.get(who, tokens.get(who))
    for (method, path), roles in HTTP_ROLES.items():
        body = json.dumps(BODIES[path]).encode() if method == "POST" else None
        headers = {**bearer(token), **({"Content-Type": "application/json"} if body else {})}
        status, resp_headers, raw = http_request(gw.port, method, path, headers, body)
        what = f"{who} {method} {path}: {status} {raw[:200]!r}"
        if who in ("none", "bad"):
            assert status == 401, what
            assert json.loads(raw)["error"] == "unauthorized", what
            assert resp_headers["www-authenticate"].startswith('Bearer realm="callcost"'), what
        elif who in roles:
            assert status == ALLOWED_STATUS.get((method, path), 200), what
        else:
            assert status == 403, what
            assert json.loads(raw)["error"] == "forbidden", what
    for method, path in PUBLIC:
        status, _, raw = http_request(gw.port, method, path, bearer(token))
        assert status == 200, f"{who} {method} {path}: {status} {raw[:200]!r}"


def test_http_credentials_in_the_wrong_place_are_refused(
    gw: Running, tokens: dict[str, str]
) -> None:
    admin = tokens["admin"]
    for path, headers in (
        (f"/api/figures?token={admin}", {}),  # in the address: logged by proxies
        ("/api/figures", {"Authorization": f"Basic {admin}"}),
        ("/api/figures", {"Authorization": "Bearer "}),
    ):
        status, _, raw = http_request(gw.port, "GET", path, headers)
        assert status == 401, (path, headers, raw)
        assert admin not in raw.decode()
    whoami = json.loads(http_request(gw.port, "GET", "/api/whoami", bearer(tokens["wallboard"]))[2])
    assert whoami == {
        "open": False,
        "name": "wallboard-1",
        "role": "wallboard",
        "permissions": ["figures"],
    }


# --------------------------------------------------------------------------- websocket matrix

#: websocket request -> the roles that may make it
WS_ROLES: list[tuple[dict, set[str]]] = [
    ({"op": "subscribe", "channel": "figures", "centre": "prg", "sub": "f"},
     {"wallboard", "supervisor", "admin"}),
    ({"op": "subscribe", "channel": "alerts", "centre": "prg", "sub": "a"},
     {"supervisor", "admin"}),
    ({"op": "ack", "id": "prg/none", "by": "t"}, {"supervisor", "admin"}),
    ({"op": "snooze", "centre": "prg", "rule": "queue-15m", "key": "sales", "for_s": 60, "by": "t"},
     {"supervisor", "admin"}),
    ({"op": "unsnooze", "centre": "prg", "rule": "queue-15m", "key": "sales", "by": "t"},
     {"supervisor", "admin"}),
    ({"op": "ping", "id": 7}, set(ROLES)),
    ({"op": "unsubscribe", "sub": "f"}, set(ROLES)),
]  # fmt: skip
#: the reply type when allowed (the ack names an unknown alert: its own error)
WS_REPLY = {"subscribe": "snapshot", "ping": "pong", "snooze": "snoozed", "unsnooze": "unsnoozed",
            "ack": "error", "unsubscribe": "unsubscribed"}  # fmt: skip


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("how", ["subprotocol", "header"])
def test_websocket_role_matrix(gw: Running, tokens: dict[str, str], role: str, how: str) -> None:
    token = tokens[role]
    if how == "subprotocol":
        ws = ws_connect(gw.port, token)
    else:
        ws = connect(f"ws://127.0.0.1:{gw.port}/ws", additional_headers=bearer(token))
    with ws:
        # the server selects the protocol, never echoes the token's subprotocol
        assert ws.subprotocol == (a.SUBPROTOCOL if how == "subprotocol" else None)
        for request, roles in WS_ROLES:
            reply = reply_to(ws, request)
            what = f"{role} {request['op']}: {reply}"
            if request["op"] == "unsubscribe" and role == "metrics":
                assert reply["error"] == "unknown_sub", what  # its figures sub was refused
            elif role in roles:
                assert reply["type"] == WS_REPLY[request["op"]], what
                if request["op"] == "ack":
                    assert reply["error"] == "unknown_alert", what
            else:
                assert reply["type"] == "error" and reply["error"] == "forbidden", what
                assert reply["request"] == request["op"]
                assert f'role "{role}"' in reply["message"], what
        # the connection stays open after a refusal
        assert ask(ws, {"op": "ping"}) == {"type": "pong"}
    m = metrics_of(gw, tokens["admin"])
    assert m['callcost_gateway_request_errors_total{code="forbidden"}'] >= 1


def test_websocket_subscriptions_get_only_what_the_role_sees(
    gw: Running, tokens: dict[str, str]
) -> None:
    """A wallboard connection subscribed to figures gets figures updates and no alert,
    while a supervisor's alerts subscription gets the new alert."""
    with (
        ws_connect(gw.port, tokens["wallboard"]) as wall,
        ws_connect(gw.port, tokens["supervisor"]) as sup,
    ):
        assert (
            ask(wall, {"op": "subscribe", "channel": "figures", "centre": "prg", "sub": "f"})[
                "type"
            ]
            == "snapshot"
        )
        assert (
            ask(sup, {"op": "subscribe", "channel": "alerts", "centre": "prg", "sub": "a"})["type"]
            == "snapshot"
        )
        gw.alerts(json.dumps(alert(key="sales", since=T0 + 1000)).encode())
        gw.figures(figures_value("prg", T0 + 2000))
        assert json.loads(sup.recv(timeout=10))["type"] == "alert"
        assert json.loads(wall.recv(timeout=10))["type"] == "update"
        assert ask(wall, {"op": "ping"}) == {"type": "pong"}  # no alert came in between


@pytest.mark.parametrize("case", ["none", "bad", "query", "two", "basic", "empty"])
def test_websocket_handshake_without_a_valid_token_is_401(
    gw: Running, tokens: dict[str, str], case: str
) -> None:
    admin = tokens["admin"]
    cases: dict[str, dict[str, Any]] = {
        "none": {},
        "bad": {"subprotocols": [a.SUBPROTOCOL, a.TOKEN_SUBPROTOCOL + make_token("bad")]},
        "query": {},
        "two": {"subprotocols": [a.TOKEN_SUBPROTOCOL + admin, a.TOKEN_SUBPROTOCOL + admin]},
        "basic": {"additional_headers": {"Authorization": f"Basic {admin}"}},
        "empty": {"subprotocols": [a.SUBPROTOCOL, a.TOKEN_SUBPROTOCOL]},
    }
    kw = cases[case]
    path = f"/ws?token={admin}" if case == "query" else "/ws"
    before = metrics_of(gw, admin)[
        'callcost_gateway_auth_refused_total{kind="websocket",reason="unauthorized"}'
    ]
    status, body = refused_status(gw.port, path, **kw)
    assert status == 401 and body["error"] == "unauthorized", body
    assert admin not in json.dumps(body)
    after = metrics_of(gw, admin)[
        'callcost_gateway_auth_refused_total{kind="websocket",reason="unauthorized"}'
    ]
    assert after == before + 1


# --------------------------------------------------------------------------- origins


def test_origins_default_to_the_gateways_own_host(gw: Running, tokens: dict[str, str]) -> None:
    sup = tokens["supervisor"]
    own = f"http://127.0.0.1:{gw.port}"
    with ws_connect(gw.port, sup, origin=Origin(own)) as ws:
        assert ask(ws, {"op": "ping"}) == {"type": "pong"}
    for origin in ("https://evil.example", f"http://127.0.0.1:{gw.port + 1}", "null"):
        status, body = refused_status(
            gw.port, subprotocols=[a.SUBPROTOCOL, a.TOKEN_SUBPROTOCOL + sup], origin=origin
        )
        assert status == 403 and body["error"] == "forbidden", (origin, body)
    # a POST from a browser page elsewhere is refused, one without Origin is not
    post = json.dumps(BODIES["/api/snoozes"]).encode()
    status, _, raw = http_request(gw.port, "POST", "/api/snoozes",
                                  {**bearer(sup), "Origin": "https://evil.example"},
                                  post)  # fmt: skip
    assert status == 403 and json.loads(raw)["error"] == "forbidden"
    status, _, _ = http_request(
        gw.port, "POST", "/api/snoozes", {**bearer(sup), "Origin": own}, post
    )
    assert status == 200
    status, _, _ = http_request(gw.port, "POST", "/api/snoozes", bearer(sup), post)
    assert status == 200


def test_configured_origins_and_open_access() -> None:
    """Without tokens everything is allowed (and the gateway says so), but the origin
    check still holds: an open gateway is the one a foreign page could drive."""
    settings = parse_settings('[gateway]\norigins = ["https://wall.example.com"]\n')
    gw = Running(settings=settings)
    try:
        with connect(
            f"ws://127.0.0.1:{gw.port}/ws", origin=Origin("https://wall.example.com")
        ) as ws:
            assert ask(ws, {"op": "subscribe", "channel": "alerts"})["type"] == "snapshot"
            assert ask(ws, {"op": "ack", "id": "x", "by": "me"})["error"] == "unknown_alert"
        with connect(
            f"ws://127.0.0.1:{gw.port}/ws", origin=Origin(f"http://127.0.0.1:{gw.port}")
        ) as ws:
            assert ask(ws, {"op": "ping"}) == {"type": "pong"}
        status, _ = refused_status(gw.port, origin="https://other.example.com")
        assert status == 403
        assert json.loads(gw.get("/api/whoami")[2]) == {
            "open": True, "name": None, "role": "admin", "permissions": list(a.PERMISSIONS)
        }  # fmt: skip
        assert gw.get("/metrics")[0] == 200
    finally:
        gw.close()


def test_presented_token_unit() -> None:
    sub = a.TOKEN_SUBPROTOCOL
    assert a.presented_token("Bearer abc", [], {}) == "abc"
    assert a.presented_token("bearer  abc ", [sub + "xyz"], {}) == "abc"  # the header first
    assert a.presented_token(None, ["callcost.v1", sub + "xyz"], {}) == "xyz"
    assert a.presented_token("Basic dXNlcg==", [sub + "xyz"], {}) == "xyz"  # a proxy's own
    assert a.presented_token(None, ["callcost.v1"], {}) is None
    assert a.presented_token(None, [sub], {}) is None
    for authorization, offered, query in (
        ("Basic dXNlcg==", [], {}),
        ("Bearer", [], {}),
        (None, [sub + "a", sub + "b"], {}),
        ("Bearer abc", [], {"token": ["abc"]}),
        (None, [], {"access_token": ["abc"]}),
    ):
        with pytest.raises(a.CredentialError) as info:
            a.presented_token(authorization, offered, query)
        assert "abc" not in str(info.value)
    assert a.offered_subprotocols(["callcost.v1, callcost.token.x", " y "]) == [
        "callcost.v1",
        "callcost.token.x",
        "y",
    ]
    assert a.select_subprotocol(["callcost.token.x", "callcost.v1"]) == "callcost.v1"
    assert a.select_subprotocol(["callcost.token.x"]) is None


def test_origin_policy_unit() -> None:
    policy = a.OriginPolicy(["https://wall.example.com:443", "http://10.0.0.5:8080"])
    assert policy.allows(None, "gw:8080")  # not a browser
    assert policy.allows("https://wall.example.com", "gw:8080")
    assert policy.allows("HTTP://10.0.0.5:8080", "gw:8080")
    assert policy.allows("http://gw:8080", "GW:8080")  # the gateway's own host
    assert not policy.allows("http://gw:8081", "gw:8080")
    assert not policy.allows("https://wall.example.com.evil.example", "gw:8080")
    assert not policy.allows("null", "gw:8080")
    assert a.OriginPolicy(tls=True).allows("https://gw", "gw:443")
    assert a.OriginPolicy(["*"]).allows("https://anything.example", None)


# --------------------------------------------------------------------------- TLS


def make_cert(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl(), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def test_tls_serves_https_and_wss(tmp_path: Path, tokens: dict[str, str]) -> None:
    make_cert(tmp_path)
    cfg = tmp_path / "callcost.toml"
    cfg.write_text(
        '[gateway]\ntls_cert = "cert.pem"\ntls_key = "key.pem"\n\n' + tokens_toml(tokens)
    )
    settings = load_settings(cfg)  # paths relative to the file
    assert settings.gateway.tls_cert == str(tmp_path / "cert.pem")
    gw = Running(settings=settings)
    try:
        gw.figures(figures_value("prg", T0))
        trust = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
        status, _, raw = http_request(gw.port, "GET", "/api/figures", bearer(tokens["wallboard"]),
                                      context=trust)  # fmt: skip
        assert status == 200 and len(json.loads(raw)["figures"]) == 15
        status, _, _ = http_request(gw.port, "GET", "/api/figures", context=trust)
        assert status == 401
        with connect(
            f"wss://127.0.0.1:{gw.port}/ws",
            ssl=trust,
            subprotocols=[
                Subprotocol(a.SUBPROTOCOL),
                Subprotocol(a.TOKEN_SUBPROTOCOL + tokens["wallboard"]),
            ],
            origin=Origin(f"https://127.0.0.1:{gw.port}"),
        ) as ws:
            snap = ask(ws, {"op": "subscribe", "channel": "figures", "centre": "prg"})
            assert snap["type"] == "snapshot" and len(snap["figures"]) == 15
        # plain HTTP on the TLS port gets no answer; a client that does not trust the
        # certificate does not connect
        with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
            http_request(gw.port, "GET", "/healthz")
        with pytest.raises(ssl.SSLCertVerificationError):
            http_request(gw.port, "GET", "/healthz", context=ssl.create_default_context())
    finally:
        gw.close()


def test_tls_with_a_bad_key_stops_start_up(tmp_path: Path) -> None:
    cert, _ = make_cert(tmp_path)
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key\n")
    cfg = tmp_path / "callcost.toml"
    cfg.write_text(f'[gateway]\ntls_cert = "{cert}"\ntls_key = "bad.pem"\n')
    gateway = Gateway(None, "127.0.0.1", 0, settings=load_settings(cfg))
    with pytest.raises(ConfigError, match=r"gateway\.tls_cert, gateway\.tls_key: cannot load"):
        asyncio.run(gateway.start())  # before it listens: nothing to stop


# --------------------------------------------------------------------------- no token in logs


def test_redact_unit() -> None:
    t = "abc-0123456789abcdefXYZ"
    lines = [
        f"< Authorization: Bearer {t}",
        f"< authorization: {t}",
        f"< Sec-WebSocket-Protocol: callcost.v1, callcost.token.{t}",
        f"< GET /ws?centre=prg&token={t} HTTP/1.1",
        f"headers=[('Authorization', 'Bearer {t}')]",
        f"InvalidHeaderFormat: invalid Sec-WebSocket-Protocol header: callcost.token.{t}/x",
        f"url http://h/wallboard#token={t}",
    ]
    for line in lines:
        clean = a.redact(line)
        assert t not in clean and "[redacted]" in clean, (line, clean)
    assert a.redact("GET /api/figures?centre=prg") == "GET /api/figures?centre=prg"


def test_no_token_in_the_logs_at_debug(tmp_path: Path) -> None:
    """``callcost gateway --log-level debug``: websockets prints every request line and
    header; good and bad tokens in every place (header, subprotocol, query, REST and
    websocket) never reach stderr, /metrics nor /healthz."""
    good = {role: make_token(f"good{role}") for role in ("wallboard", "admin")}
    bad = make_token("bad")
    cfg = tmp_path / "callcost.toml"
    cfg.write_text(
        '[[gateway.tokens]]\nname = "tv"\nrole = "wallboard"\nenv = "CC_TEST_TOKEN_TV"\n\n'
        f'[[gateway.tokens]]\nname = "ops"\nrole = "admin"\nsha256 = "{sha(good["admin"])}"\n'
    )
    port = free_port()
    log_path = tmp_path / "gateway.log"
    env = {**os.environ, "CC_TEST_TOKEN_TV": good["wallboard"]}
    proc = spawn(["gateway", "--bootstrap", "", "--port", str(port), "--config", str(cfg),
                  "--log-level", "debug"], log_path, env=env)
    secrets_ = [*good.values(), bad]
    try:
        wait_for(lambda: answers(port), 30, "the gateway to listen")
        bodies: list[bytes] = []
        for token in secrets_:
            for path in ("/api/figures", "/metrics", f"/api/figures?token={token}",
                         f"/healthz?token={token}"):  # fmt: skip
                bodies.append(http_request(port, "GET", path, bearer(token))[2])
            bodies.append(http_request(port, "GET", "/api/figures", {"Authorization": token})[2])
            bodies.append(
                http_request(port, "POST", "/api/snoozes", bearer(token), b'{"centre": 1}')[2]
            )
            for kw in (
                {"subprotocols": [a.SUBPROTOCOL, a.TOKEN_SUBPROTOCOL + token]},
                {"additional_headers": bearer(token)},
                {"additional_headers": {"Sec-WebSocket-Protocol": f"callcost.token.{token}/x"}},
            ):
                try:
                    with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=10, **kw) as ws:
                        ws.send(json.dumps({"op": "subscribe", "channel": "alerts"}))
                        bodies.append(str(ws.recv(timeout=10)).encode())  # text frames
                except InvalidStatus as exc:
                    bodies.append(bytes(exc.response.body or b""))
            try:
                with connect(f"ws://127.0.0.1:{port}/ws?token={token}", open_timeout=10):
                    pass
            except InvalidStatus as exc:
                bodies.append(bytes(exc.response.body or b""))
        bodies.append(http_request(port, "GET", "/metrics", bearer(good["admin"]))[2])
        bodies.append(http_request(port, "GET", "/healthz")[2])
        bodies.append(http_request(port, "GET", "/api/whoami", bearer(good["admin"]))[2])
    finally:
        stop(proc, timeout_s=20)
    text = log_path.read_text(errors="replace")
    # the test sees what it claims to: websockets' debug lines and redactions are there
    assert (
        "< GET /ws" in text
        and "< Sec-WebSocket-Protocol: callcost.v1, callcost.token.[redacted]" in text
    ), text[-3000:]
    assert "< Authorization: [redacted]" in text
    assert "refused GET" in text and "NO ACCESS CONTROL" not in text
    for token in secrets_:
        assert token not in text, f"a token is in the gateway's log:\n{text[-3000:]}"
        # nor half of one (a split across a line, or a log that cut it)
        assert token[-16:] not in text
        for body in bodies:
            assert token.encode() not in body


# --------------------------------------------------------------------------- the page


@pytest.mark.browser
def test_wallboard_with_a_token_and_without(tokens: dict[str, str]) -> None:
    """With tokens configured: the wallboard opened with #token= shows its tiles (no
    alerts banner subscription for a wallboard token) and takes the token out of the
    address; without a token, or with a wrong one, it says it is not authorised."""
    from playwright.sync_api import sync_playwright

    settings = parse_settings(tokens_toml(tokens))
    gw = Running(settings=settings)
    try:
        gw.figures(figures_value("prg", T0))
        base = f"http://127.0.0.1:{gw.port}/wallboard?centre=prg"
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
            try:
                ctx = browser.new_context(viewport={"width": 1280, "height": 720})
                ctx.set_default_timeout(20000)
                page = ctx.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(base + "#token=" + tokens["wallboard"])
                page.wait_for_selector("#connection[data-state=live]")
                page.wait_for_function("document.querySelectorAll('#tiles .tile').length === 3")
                assert "token" not in page.url
                assert (
                    page.evaluate("sessionStorage.getItem('callcost.token')") == tokens["wallboard"]
                )
                assert page.evaluate("[...window.callcostLive.subs.keys()]") == ["figures"]
                assert page.locator("#access-problem").count() == 0
                gw.figures(figures_value("prg", T0 + 1000, total=90.0))
                page.wait_for_function(
                    "document.querySelector('#tiles .tile .cpc').textContent === '9.00'"
                )
                page.reload()  # the token stays for this tab
                page.wait_for_selector("#connection[data-state=live]")
                # and for the other views opened in it: the landing page's list and table
                page.goto(f"http://127.0.0.1:{gw.port}/")
                page.wait_for_selector("#view-list li[data-centre=prg]")
                page.wait_for_function(
                    "document.querySelectorAll('#figures tbody tr').length === 15"
                )
                assert errors == []
                ctx.close()

                for fragment in ("", "#token=" + make_token("wrong")):
                    ctx = browser.new_context(viewport={"width": 1280, "height": 720})
                    ctx.set_default_timeout(20000)
                    page = ctx.new_page()
                    page.goto(base + fragment)
                    page.wait_for_selector("#access-problem:not([hidden])")
                    text = page.inner_text("#access-problem")
                    assert "Not authorised" in text and "#token=" in text, text
                    page.wait_for_selector("#connection[data-state=unauthorised]")
                    # and it stays so across the retries (1 s, then about 15 s apart)
                    page.wait_for_timeout(2500)
                    assert page.evaluate(
                        "[document.getElementById('connection').dataset.state,"
                        " document.getElementById('connection').textContent]"
                    ) == ["unauthorised", "not authorised"]
                    assert page.locator("#tiles .tile").count() == 0
                    ctx.close()
            finally:
                browser.close()
    finally:
        gw.close()
