"""The `callcost` command.

Each sub-command lives in its own module, which defines ``add_arguments(parser)`` and
``run(args) -> int``. Modules are imported only when their command runs, so that
``callcost replay`` never pays for importing Faust and ``callcost broker`` never pays for
numba.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from callcost import __version__

#: command name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "broker": ("callcost.broker_cli", "start, stop or inspect the local Kafka broker (KRaft)"),
    "topics": ("callcost.topics_cmd", "create the callcost topics on a broker"),
    "worker": (
        "callcost.agents.worker_cli",
        "run the Faust worker: call-events in, figures and alerts out",
    ),
    "gateway": ("callcost.web.gateway_cli", "run the websocket/HTTP gateway and the pages"),
    "simulate": ("callcost.simulate", "send simulated live contact-centre traffic to call-events"),
    "produce": ("callcost.produce", "send a JSONL file of events to call-events"),
    "replay": ("callcost.replay", "compute figures and alerts offline from a JSONL file"),
    "demo": ("callcost.demo", "start broker, worker, gateway and simulator; print the address"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="callcost", description="Real-time cost per call for contact centres."
    )
    parser.add_argument("--version", action="version", version=f"callcost {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module_name)
        # Argument definitions are cheap to import only for the command being run;
        # `callcost --help` lists the commands without importing any of them.
        if name in _selected(sys.argv[1:]):
            importlib.import_module(module_name).add_arguments(p)
    return parser


def _selected(argv: Sequence[str]) -> set[str]:
    return {a for a in argv if a in COMMANDS}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    saved = sys.argv
    sys.argv = [saved[0], *argv]
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
    finally:
        sys.argv = saved
    module = importlib.import_module(args._module)
    from callcost.errors import CallcostError

    try:
        return int(module.run(args) or 0)
    except CallcostError as exc:
        print(f"callcost {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
