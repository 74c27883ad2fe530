"""The sweep kernel: ns per booked event, batched, against a pure-Python reference.

    .venv/bin/python benchmarks/bench_kernel.py [--bookings 1000000] [--seconds 3600]
    .venv/bin/python benchmarks/bench_kernel.py --smoke     # a small input, one run (< 30 s)

A dense stream: ``--bookings`` booked events (offers, handled calls, wraps) in random
order spread over ``--seconds`` of one centre with 9 keys (centre, 4 queues, 2 channels,
2 directions), sessions of 60 agents, and the default windows (15m, 1h, today) plus two
rule windows (2m, 5m) evaluated at every instant. Measured: ``compress`` (sort by second,
merge) and ``sweep`` (every instant), the whole batched path of the engine's numbers.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import machine
from callcost.streams import kernels as K


def make(n_b: int, seconds: int, seed: int = 7, batch: int = 1000):
    """``n_b`` booked events (offers, handled calls, wraps) as the engine's atoms."""
    rng = np.random.default_rng(seed)
    t0 = 1_767_225_600_000
    ts = np.sort(rng.integers(t0, t0 + seconds * 1000, n_b)).astype(np.int64)
    # 9 keys: centre, 4 queues, 2 channels, 2 directions; 5 combos as in the simulator
    combo_keys = np.array(
        [[0, 1, 5, 7], [0, 2, 5, 7], [0, 3, 5, 8], [0, 4, 6, 7], [0, 4, 5, 7]], np.int64
    )
    rows = np.zeros((n_b, 2 + K.NV), np.int64)
    rows[:, 0] = ts
    rows[:, 1] = rng.integers(0, len(combo_keys), n_b)
    kind = rng.integers(0, 3, n_b)
    rows[kind == 0, 2 + K.V_OFFERED] = 1
    rows[kind == 1, 2 + K.V_HANDLED] = 1
    rows[kind == 1, 2 + K.V_HANDLE_MS] = rng.integers(30_000, 600_000, (kind == 1).sum())
    rows[kind == 1, 2 + K.V_BILL_IN_S] = 66
    rows[kind == 2, 2 + K.V_HANDLE_MS] = 20_000
    # bookings reach the kernels in batches of `batch`, in any order within a batch
    batches = []
    for lo in range(0, n_b, batch):
        chunk = rows[lo : lo + batch].copy()
        rng.shuffle(chunk)
        r, v = np.nonzero(chunk[:, 2:])
        atoms = (chunk[r, 0], chunk[r, 1], v.astype(np.int64), chunk[r, 2 + v])
        lo = (int(atoms[0].min()) // 1000) * 1000 if len(r) else t0
        nsec = (int(atoms[0].max()) - lo) // 1000 + 1 if len(r) else 1
        batches.append((atoms, lo, nsec))
    pts = sorted(
        (int(t), int(rng.integers(0, 3))) for t in rng.integers(t0, t0 + seconds * 1000, 60)
    )
    sts = np.array([p[0] for p in pts], np.int64)
    scls = np.array([p[1] for p in pts], np.int64)
    return t0, batches, sts, scls, np.ones(len(pts), np.int64), combo_keys


def run_kernel(data, seconds: int, fn=K.sweep, compress_fn=K.compress, timings=None):
    """compress each batch, then sweep every instant; ``timings`` gets the kernels' own time."""
    t0, batches, sts, scls, sdel, combo_keys = data
    nk, nc, ncb = 9, 3, len(combo_keys)
    wlen = np.array([900_000, 3_600_000, -1, 120_000, 300_000], np.int64)
    nw = len(wlen)
    outw = np.array([0, -1, -1, 1, 2], np.int64)
    C = np.zeros((ncb, K.NV), np.int64)
    Ct = np.zeros((nw, ncb, K.NV), np.int64)
    out_h = np.zeros((seconds, 3, nk), np.int64)
    out_c = np.zeros((seconds, 3, nk))
    M0 = (t0 // 1000) * 1000
    parts = []
    t_compress = 0.0
    for b, lo, nsec in batches:
        merged = tuple(np.empty(len(b[0]), np.int64) for _ in range(4))
        c0 = time.perf_counter()
        m = compress_fn(*b, np.int64(lo), nsec, ncb, *merged)
        t_compress += time.perf_counter() - c0
        parts.append(tuple(x[:m] for x in merged))
    atoms = tuple(np.concatenate([p[i] for p in parts]) for i in range(4))
    s0 = time.perf_counter()
    fn(
        *atoms,
        sts,
        scls,
        sdel,
        np.int64(M0),
        seconds,
        wlen,
        np.int64(M0),
        np.zeros(0, np.int64),
        combo_keys,
        C,
        Ct,
        np.zeros(nc, np.int64),
        np.zeros((nw, nc), np.int64),
        np.zeros(nc, np.int64),
        np.zeros((nw, nc), np.int64),
        np.array([24.0, 30.0, 21.0]),
        np.array([1.5, 60.0, 0.012, 0.02]),
        outw,
        out_h,
        out_c,
    )
    if timings is not None:
        timings.append((t_compress, time.perf_counter() - s0))
    return C - Ct[1]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--bookings", type=int, default=1_000_000)
    p.add_argument("--seconds", type=int, default=3600)
    p.add_argument("--python-bookings", type=int, default=20_000)
    p.add_argument("--batch", type=int, default=1000, help="booked events per compress call")
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--smoke", action="store_true", help="a small input, one run (< 30 s)")
    a = p.parse_args()
    if a.smoke:
        a.bookings, a.seconds, a.python_bookings, a.runs = 20_000, 600, 2_000, 1
    K.warm_up()
    data = make(a.bookings, a.seconds, batch=a.batch)
    timings: list[tuple[float, float]] = []
    for _ in range(a.runs):
        run_kernel(data, a.seconds, timings=timings)
    empty_t: list[tuple[float, float]] = []
    empty = make(1, a.seconds)
    for _ in range(a.runs):
        run_kernel(empty, a.seconds, timings=empty_t)
    t_c = statistics.median(t[0] for t in timings)
    t_s = statistics.median(t[1] for t in timings)
    t_e = statistics.median(t[1] for t in empty_t)
    n = a.bookings
    # the same algorithm in plain Python (numba's own py_func), on a smaller input
    small = make(a.python_bookings, a.seconds, batch=a.batch)
    py_t: list[tuple[float, float]] = []
    run_kernel(small, a.seconds, fn=K.sweep.py_func, compress_fn=K.compress.py_func, timings=py_t)
    nb_t: list[tuple[float, float]] = []
    for _ in range(a.runs):
        run_kernel(small, a.seconds, timings=nb_t)
    t_py = sum(py_t[0])
    t_nb = statistics.median(sum(t) for t in nb_t)
    np.testing.assert_array_equal(
        run_kernel(small, a.seconds),
        run_kernel(small, a.seconds, fn=K.sweep.py_func, compress_fn=K.compress.py_func),
    )
    print(f"machine: {machine()}")
    print(
        f"{n:,} booked events in any order within batches of {a.batch:,},"
        f" over {a.seconds:,} instants;"
        f" 5 windows (4 fixed), 9 keys; median of {a.runs}:"
    )
    print(f"  compress: {t_c * 1e3:.1f} ms = {t_c / n * 1e9:.1f} ns per booked event")
    print(
        f"  sweep:    {t_s * 1e3:.1f} ms = {t_s / n * 1e9:.1f} ns per booked event,"
        f" of which {t_e / n * 1e9:.1f} ns the instants' own cost"
        f" ({t_e / a.seconds * 1e9:.0f} ns an instant)"
    )
    print(f"  kernels together: {(t_c + t_s) / n * 1e9:.1f} ns per booked event")
    print(
        f"pure Python (the same code, not compiled), {a.python_bookings:,} booked events:"
        f" {t_py:.2f} s;"
        f" compiled {t_nb * 1e3:.1f} ms; speed-up x{t_py / t_nb:,.0f}"
    )


if __name__ == "__main__":
    main()
