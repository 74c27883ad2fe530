"""The ``callcost broker start|stop|status`` command."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from callcost.broker import start, status, stop
from callcost.broker_config import BrokerConfig
from callcost.broker_process import broker_pids, read_pid

START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0


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
        before = broker_pids(cfg)
        took = start(cfg, timeout_s=args.timeout or START_TIMEOUT_S)
        pid = read_pid(cfg)
        verb = "already running" if before else f"started in {took:.1f} s"
        print(f"broker {verb} at {cfg.bootstrap} (pid {pid}, home {cfg.home})")
    elif args.action == "stop":
        pids = stop(cfg, timeout_s=args.timeout or STOP_TIMEOUT_S)
        if pids:
            print(f"broker stopped (pid {', '.join(map(str, pids))}, home {cfg.home})")
        else:
            print(f"no broker running (home {cfg.home})")
    else:
        print(json.dumps(status(cfg), sort_keys=True))
    return 0
