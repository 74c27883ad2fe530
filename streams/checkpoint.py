"""Checkpoints of a centre's engine state (pure: bytes in, bytes out; no Kafka).

A checkpoint holds everything :class:`~callcost.streams.centre.CentreState` knows: the
join state of calls and agents, the remembered ids, the pending and committed bookings,
the cumulative sums, the watermark and instants, and every alert machine. Restored into
an engine with the same settings, a centre goes on exactly as if it had never stopped.

Format: ``MAGIC``, a 4-byte big-endian header length, a JSON header (scalars, strings,
small lists), then an ``.npz`` archive of the numpy arrays, read with
``allow_pickle=False`` so that loading a checkpoint never runs code. The header carries a
fingerprint of the settings the state depends on (windows, rules, rate classes); a
checkpoint taken under other settings is refused with :class:`CheckpointError`.
"""

from __future__ import annotations

import hashlib
import io
import struct
from array import array
from typing import Any, Protocol

import numpy as np
import orjson

from callcost.errors import CallcostError
from callcost.streams.centre import CentreState, Host
from callcost.streams.sessions import Agent

MAGIC = b"CCKP1\n"
_ARRAYS = ("ats", "acb", "avi", "aamt", "sts", "scls", "sdel", "C", "Ct", "CS", "CSt",
           "nhead", "ntail", "combo_keys")  # fmt: skip
_SCALARS = ("M", "min_ts", "max_ts", "today_start", "next_mid", "last_expiry", "late_events",
            "quiet_jumps", "trimmed_atom_ts", "trimmed_point_ts")  # fmt: skip
_CALL_COLUMNS = ("off_ts", "off_cb", "off_flags", "ans_ts", "end_ts", "wrap_ts", "out_ts",
                 "out_conv", "last_ts")  # fmt: skip


class CheckpointError(CallcostError):
    """A checkpoint cannot be read, or was taken under other settings."""


class Holder(Host, Protocol):
    """What a checkpoint is restored into (the engine): the centres it holds, by id."""

    centres: dict[str, CentreState]


def fingerprint(st: CentreState) -> str:
    """What the state's shape depends on: windows, rules and labour-rate classes."""
    parts = {
        "windows": [w.name for w in st.windows],
        "rules": [(r.name, r.scope, r.window) for r, *_ in st.rules],
        "classes": sorted(st.team_class.items()),
    }
    return hashlib.sha256(orjson.dumps(parts)).hexdigest()[:16]


def dump(st: CentreState, extra: dict[str, Any] | None = None) -> bytes:
    """One centre's state as bytes. ``extra`` (JSON-able) rides along, e.g. offsets."""
    calls = st.calls
    header = {
        "centre": st.centre,
        "fingerprint": fingerprint(st),
        "scalars": {k: getattr(st, k) for k in _SCALARS},
        "keys": st.keys,
        "combos": [list(c) for c in st.combo_index],
        "calls": {
            "index": calls.index,
            "free": calls.free,
            "off_id": calls.off_id,
            "out_id": calls.out_id,
        },
        "agents": {
            a: {"events": ag.events, "open0": ag.open0, "changes": ag.changes}
            for a, ag in st.agents.items()
        },
        "seen": st.seen,
        "pend_b": st.pend_b,
        "pend_s": st.pend_s,
        "machines": [
            [[k, *m.dump()] for k, m in sorted(machines.items())] for *_, machines in st.rules
        ],
        "extra": extra or {},
    }
    arrays = {k: getattr(st, k) for k in _ARRAYS}
    for col in _CALL_COLUMNS:
        arrays[f"call_{col}"] = np.frombuffer(getattr(calls, col), dtype=np.int64)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    head = orjson.dumps(header)
    return MAGIC + struct.pack(">I", len(head)) + head + buf.getvalue()


def read_header(data: bytes) -> dict[str, Any]:
    """The JSON header alone (centre, fingerprint, extra), without the arrays."""
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 4:
        raise CheckpointError("not a callcost checkpoint (bad magic)")
    (n,) = struct.unpack_from(">I", data, len(MAGIC))
    start = len(MAGIC) + 4
    try:
        header = orjson.loads(data[start : start + n])
    except orjson.JSONDecodeError as exc:
        raise CheckpointError(f"checkpoint header is not JSON: {exc}") from None
    header["_arrays_at"] = start + n
    return header


def load(engine: Holder, data: bytes) -> CentreState:
    """Rebuild a centre from ``data`` inside ``engine`` (replacing what it had)."""
    header = read_header(data)
    cid = header["centre"]
    st = CentreState(engine, cid)
    if header["fingerprint"] != fingerprint(st):
        raise CheckpointError(
            f"checkpoint of centre {cid!r} was taken with other windows, rules or teams"
            " than the current configuration"
        )
    try:
        npz = np.load(io.BytesIO(data[header["_arrays_at"] :]), allow_pickle=False)
        arrays = {k: npz[k] for k in npz.files}
    except (ValueError, OSError) as exc:
        raise CheckpointError(f"checkpoint of centre {cid!r}: bad arrays: {exc}") from None
    for k, v in header["scalars"].items():
        setattr(st, k, v)
    st.keys = [tuple(k) for k in header["keys"]]
    st.key_index = {k: i for i, k in enumerate(st.keys)}
    st.combo_index = {tuple(c): i for i, c in enumerate(header["combos"])}
    for k in _ARRAYS:
        setattr(st, k, arrays[k].copy())
    calls = st.calls
    for col in _CALL_COLUMNS:
        setattr(calls, col, array("q", arrays[f"call_{col}"].tobytes()))
    calls.index = header["calls"]["index"]
    calls.free = header["calls"]["free"]
    calls.off_id = header["calls"]["off_id"]
    calls.out_id = header["calls"]["out_id"]
    for name, a in header["agents"].items():
        ag = Agent()
        ag.events = [tuple(e) for e in a["events"]]
        ag.open0 = a["open0"]
        ag.changes = sorted(tuple(c) for c in a["changes"])  # add() bisects them
        st.agents[name] = ag
    st.seen = header["seen"]
    st.pend_b = [tuple(b) for b in header["pend_b"]]
    st.pend_s = [tuple(p) for p in header["pend_s"]]
    for (rule, _wi, low, high, machines), saved in zip(st.rules, header["machines"], strict=True):
        for k, state, direction, since in saved:
            m = st.machine(rule, low, high, k)
            m.load((state, direction, since))
            machines[k] = m
    engine.centres[cid] = st
    return st
