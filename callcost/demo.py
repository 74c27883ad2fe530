"""``callcost demo``: everything on one machine, with simulated traffic.

Starts the local broker (unless one already answers), creates the topics, then runs the
worker, the gateway and the simulator as child processes, and prints the wallboard's
address and how long start-up took. Ctrl-C or SIGTERM stops them in order: simulator
(which logs its agents out), worker, gateway, then the broker if the demo started it.

Each child runs in its own session, so a Ctrl-C in the terminal reaches only the demo,
which then stops the children in that order. Their logs are in ``var/demo/logs``.

Every child gets the demo's ``--config`` and inherits the ``CALLCOST_KAFKA_*``
environment, so all of them connect to Kafka alike (``[kafka]``); the broker the demo
starts itself is PLAINTEXT, so Kafka security settings need a broker already running.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

STOP_TIMEOUT_S = 20.0
READY_TIMEOUT_S = 120.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=8080,
                        help="wallboard (gateway) port on 127.0.0.1 (default %(default)s)")
    parser.add_argument("--centres", type=int, default=2,
                        help="simulated centres (default %(default)s: prg and nyc)")
    parser.add_argument("--rate", type=float, default=6.0,
                        help="contacts a minute per centre, averaged over the day "
                             "(default %(default)s)")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="simulated time runs this many times faster than the wall clock "
                             "(default %(default)s)")
    parser.add_argument("--config", default=None,
                        help="configuration TOML (default demo/callcost.toml)")


class _Children:
    """The demo's child processes, stopped in a fixed order."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *cli_args: str) -> None:
        log = (self.log_dir / f"{name}.log").open("wb")
        with log:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "callcost.cli", *cli_args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # the terminal's Ctrl-C goes to the demo alone
            )

    def dead(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.poll() is not None]

    def tail(self, name: str, lines: int = 15) -> str:
        try:
            text = (self.log_dir / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, order: tuple[str, ...]) -> None:
        for name in order:
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                print(f"  {name} did not stop in {STOP_TIMEOUT_S:.0f} s: killed", file=sys.stderr)
                proc.kill()
                proc.wait()
            print(f"  stopped {name}", file=sys.stderr)


def _get_json(url: str) -> tuple[int, object]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except (OSError, ValueError):
        return 0, None


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def _demo_config(explicit: str | None) -> str | None:
    if explicit:
        return explicit
    from callcost.broker_config import repo_root

    path = repo_root() / "demo" / "callcost.toml"
    return str(path) if path.exists() else None


def _watch(children: _Children, url: str, t0: float, stopping: list[int],
           log_dir: Path) -> int:
    """Announce the wallboard when the gateway answers and the first figures when they
    show; return when a signal arrives (0) or a child stops by itself (1)."""
    gateway_up = figures_shown = False
    figures_deadline = time.monotonic() + READY_TIMEOUT_S
    probe = f"{url}api/figures?centre=prg&scope=centre&window=15m"
    while not stopping:
        dead = children.dead()
        if dead:
            for name in dead:
                print(f"{name} stopped by itself; last lines of {log_dir / name}.log:\n"
                      f"{children.tail(name)}", file=sys.stderr)
            return 1
        took = time.monotonic() - t0
        if not gateway_up:
            if _get_json(f"{url}healthz")[0] in (200, 503):
                gateway_up = True
                print(f"\ncallcost demo: wallboard at {url} (up {took:.1f} s after start)\n"
                      f"  logs in {log_dir}; Ctrl-C stops everything", flush=True)
        elif not figures_shown:
            status, body = _get_json(probe)
            if status == 200 and isinstance(body, dict) and body.get("figures"):
                figures_shown = True
                print(f"  first figures on the wallboard {took:.1f} s after start", flush=True)
            elif time.monotonic() > figures_deadline:
                figures_shown = True
                print(f"  no figures after {READY_TIMEOUT_S:.0f} s: see {log_dir}", flush=True)
        time.sleep(0.2 if not figures_shown else 0.5)
    return 0


def run(args: argparse.Namespace) -> int:
    from callcost import broker, broker_config, broker_probe, topics_cmd
    from callcost.kafka_client import kafka_python_kwargs
    from callcost.streams.config import load_settings

    t0 = time.monotonic()
    stopping: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda signum, frame: stopping.append(signum))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    cfg = broker_config.BrokerConfig()
    bootstrap = cfg.bootstrap
    started_broker = False
    root = broker_config.repo_root()
    log_dir = root / "var" / "demo" / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    children = _Children(log_dir)
    config = _demo_config(args.config)
    settings = load_settings(config)  # [kafka]: how every client connects
    security = kafka_python_kwargs(settings)
    with_config = ["--config", config] if config else []
    url = f"http://127.0.0.1:{args.port}/"
    # The worker starts first: it imports and compiles while the broker starts, then
    # waits for its topic. A new consumer group each run: the engine keeps its state in
    # memory, so this run's worker reads call-events from the start rather than resuming
    # at the offsets of an earlier run's (lost) state.
    worker = ["worker", "--bootstrap", bootstrap, "--group", f"callcost-demo-{int(time.time())}",
              "--data-dir", str(root / "var" / "demo" / "worker")]
    worker += with_config
    try:
        children.start("worker", *worker)
        if _port_open(cfg.port) and broker_probe.probe(bootstrap, 3.0, security):
            print(f"using the broker already running at {bootstrap}", file=sys.stderr)
        else:
            print(f"starting the broker at {bootstrap} ({cfg.home})...", file=sys.stderr)
            started_broker = True
            took = broker.start(cfg)
            print(f"  broker ready in {took:.1f} s", file=sys.stderr)
        topics_cmd.create_topics(bootstrap, 3, kafka=settings)
        children.start("gateway", "gateway", "--bootstrap", bootstrap, "--port", str(args.port),
                       *with_config)
        children.start("simulator", "simulate", "--bootstrap", bootstrap, *with_config,
                       "--centres", str(args.centres), "--rate", str(args.rate),
                       "--speed", str(args.speed))
        return _watch(children, url, t0, stopping, log_dir)
    finally:
        # Signals during the stop only append to ``stopping``: the order is kept.
        print("stopping...", file=sys.stderr)
        children.stop(("simulator", "worker", "gateway"))
        if started_broker:
            broker.stop(cfg)
            print("  stopped the broker", file=sys.stderr)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print(f"demo stopped after {time.monotonic() - t0:.0f} s", file=sys.stderr)
