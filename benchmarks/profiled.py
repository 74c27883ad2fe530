"""Run a callcost command under cProfile, timed by the process's CPU time.

    .venv/bin/python -m benchmarks.profiled OUT.prof gateway --port 8080 ...

The benchmarks' ``--profile`` uses it for the worker and the gateway. CPU time, not
wall time: on a shared, loaded machine a wall-clock profile charges the moments the
process waited for a core to whatever function it was in. The profile is written when
the command returns (SIGTERM stops the gateway and the worker cleanly).
"""

from __future__ import annotations

import cProfile
import sys
import time


def main() -> int:
    out, args = sys.argv[1], sys.argv[2:]
    from callcost.cli import main as callcost

    profile = cProfile.Profile(time.process_time)
    code: object = 0
    try:
        code = profile.runcall(callcost, args)
    except SystemExit as exc:
        code = exc.code
    finally:
        profile.dump_stats(out)
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
