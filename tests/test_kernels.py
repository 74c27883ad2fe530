"""The numba kernels against plain-Python references (numbagg style)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from callcost.streams import kernels as K


def ref_derive(R_w, SR_w, length_ms, labour_rates, rates):
    staffed = int(SR_w.sum())
    labour = sum(SR_w[c] * labour_rates[c] for c in range(len(SR_w))) / 3_600_000
    overhead = (rates[K.R_FIXED] * length_ms + rates[K.R_SEAT] * staffed) / 3_600_000
    rows = []
    for k in range(R_w.shape[0]):
        handled = R_w[k, K.V_HANDLED]
        h = R_w[k, K.V_HANDLE_MS]
        tel = (
            R_w[k, K.V_BILL_IN_S] * rates[K.R_TEL_IN] + R_w[k, K.V_BILL_OUT_S] * rates[K.R_TEL_OUT]
        ) / 60
        share = 1.0 if k == 0 else (h / R_w[0, K.V_HANDLE_MS] if R_w[0, K.V_HANDLE_MS] > 0 else 0.0)
        total = tel + (labour + overhead) * share
        rows.append((handled, total / handled if handled > 0 else math.nan))
    return rows


def random_case(rng, n_b=300, n_agents=6, span_s=600, nk=6, nc=3):
    t0 = 1_700_000_000_000
    ats = np.sort(rng.integers(t0, t0 + span_s * 1000, n_b)).astype(np.int64)
    # combos: (queue, channel, direction) key triples; keys 1-2 queues, 3-4 channels, 5+ directions
    combo_keys = np.array(
        [[0, q, c, d] for q in (1, 2) for c in (3, 4) for d in range(5, nk) if rng.random() < 0.8]
        or [[0, 1, 3, 5]],
        np.int64,
    )
    acb = rng.integers(0, len(combo_keys), n_b).astype(np.int64)
    avi = rng.integers(0, K.NV, n_b).astype(np.int64)
    aamt = rng.integers(-3, 50, n_b).astype(np.int64)
    pts = []
    for _ in range(n_agents):
        times = np.sort(rng.integers(t0, t0 + span_s * 1000, 4))
        c = int(rng.integers(0, nc))
        for j, t in enumerate(times):
            pts.append((int(t), c, 1 if j % 2 == 0 else -1))
    pts.sort()
    sts = np.array([p[0] for p in pts], np.int64)
    scls = np.array([p[1] for p in pts], np.int64)
    sdel = np.array([p[2] for p in pts], np.int64)
    return t0, ats, acb, avi, aamt, sts, scls, sdel, combo_keys


def ref_sums(ats, acb, avi, aamt, sts, scls, sdel, combo_keys, T, S, nk, nc):
    """Brute force: atoms with ts in [S, T), into each key of their combo; staffed ms by class."""
    R = np.zeros((nk, K.NV), np.int64)
    for i in range(len(ats)):
        if S <= ats[i] < T:
            for k in combo_keys[acb[i]]:
                R[k, avi[i]] += aamt[i]
    SR = np.zeros(nc, np.int64)
    # the open count by class is a step function: integrate it over [S, T)
    for i in range(len(sts)):
        start = max(sts[i], S)
        if start < T:
            SR[scls[i]] += sdel[i] * (T - start)
    return R, SR


@pytest.mark.parametrize("seed", range(6))
def test_sweep_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    nk, nc = 6, 3
    t0, ats, acb, avi, aamt, sts, scls, sdel, combo_keys = random_case(rng, nk=nk, nc=nc)
    ncb = len(combo_keys)
    wlen = np.array([60_000, 5_000, -1, 300_000], np.int64)
    nw = len(wlen)
    M0 = (t0 // 1000) * 1000
    midnight = M0 + 137_000  # a pretend local midnight inside the span
    today_start = M0 - 3_600_000
    C = np.zeros((ncb, K.NV), np.int64)
    Ct = np.zeros((nw, ncb, K.NV), np.int64)
    CS = np.zeros(nc, np.int64)
    CSt = np.zeros((nw, nc), np.int64)
    nhead = np.zeros(nc, np.int64)
    ntail = np.zeros((nw, nc), np.int64)
    labour_rates = np.array([24.0, 30.0, 21.5])
    rates = np.array([1.5, 60.0, 0.012, 0.02])
    outw = np.array([0, -1, 1, 2], np.int64)
    n_total = 700
    out_h = np.zeros((n_total, 3, nk), np.int64)
    out_c = np.zeros((n_total, 3, nk))
    state = (C, Ct, CS, CSt, nhead, ntail, labour_rates, rates, outw)
    # two calls, to check that state carries over between batches
    first = 333
    ts1 = K.sweep(
        ats,
        acb,
        avi,
        aamt,
        sts,
        scls,
        sdel,
        np.int64(M0),
        first,
        wlen,
        np.int64(today_start),
        np.array([midnight]),
        combo_keys,
        *state,
        out_h[:first],
        out_c[:first],
    )
    assert ts1 == midnight
    K.sweep(
        ats,
        acb,
        avi,
        aamt,
        sts,
        scls,
        sdel,
        np.int64(M0 + first * 1000),
        n_total - first,
        wlen,
        np.int64(ts1),
        np.zeros(0, np.int64),
        combo_keys,
        *state,
        out_h[first:],
        out_c[first:],
    )
    for i in range(n_total):
        T = M0 + (i + 1) * 1000
        for w in range(nw):
            S = T - wlen[w] if wlen[w] >= 0 else (midnight if midnight <= T else today_start)
            Rw, SRw = ref_sums(ats, acb, avi, aamt, sts, scls, sdel, combo_keys, T, S, nk, nc)
            if i == n_total - 1:
                got = np.zeros((nk, K.NV), np.int64)
                K.combo_to_keys(C - Ct[w], combo_keys, got)
                np.testing.assert_array_equal(got, Rw)
                np.testing.assert_array_equal(CS - CSt[w], SRw)
            if outw[w] >= 0:
                rows = ref_derive(Rw, SRw, T - S, labour_rates, rates)
                for k, (handled, cpc) in enumerate(rows):
                    assert out_h[i, outw[w], k] == handled
                    got = out_c[i, outw[w], k]
                    assert (math.isnan(got) and math.isnan(cpc)) or got == pytest.approx(
                        cpc, rel=1e-12
                    )


def test_combo_to_keys_matches_python() -> None:
    rng = np.random.default_rng(1)
    combo_keys = np.array([[0, 1, 3, 5], [0, 2, 3, 5], [0, 1, 4, 6]], np.int64)
    diff = rng.integers(-5, 9, (3, K.NV)).astype(np.int64)
    out = np.full((7, K.NV), 99, np.int64)
    K.combo_to_keys(diff, combo_keys, out)
    want = np.zeros((7, K.NV), np.int64)
    for cb, keys in enumerate(combo_keys):
        for k in keys:
            want[k] += diff[cb]
    np.testing.assert_array_equal(out, want)


def test_derive_allocates_by_handle_time() -> None:
    R = np.zeros((3, K.NV), np.int64)
    R[0, K.V_HANDLED], R[0, K.V_HANDLE_MS] = 3, 300_000
    R[1, K.V_HANDLED], R[1, K.V_HANDLE_MS], R[1, K.V_BILL_IN_S] = 1, 100_000, 60
    R[2, K.V_HANDLED], R[2, K.V_HANDLE_MS] = 2, 200_000
    R[0, K.V_BILL_IN_S] = 60
    SR = np.array([3_600_000], np.int64)  # one agent-hour at the default rate
    out = np.zeros((3, K.NF))
    K.derive(R, SR, 900_000, np.array([24.0]), np.array([1.5, 60.0, 0.012, 0.02]), out)
    labour, overhead = 24.0, 60.0 * 0.25 + 1.5
    assert out[0, K.F_LABOUR] == pytest.approx(labour)
    assert out[0, K.F_OVERHEAD] == pytest.approx(overhead)
    assert out[0, K.F_TELEPHONY] == pytest.approx(0.012)
    assert out[1, K.F_TOTAL] + out[2, K.F_TOTAL] == pytest.approx(out[0, K.F_TOTAL])
    assert out[2, K.F_LABOUR] == pytest.approx(labour * 2 / 3)
    assert out[0, K.F_OCCUPANCY] == pytest.approx(300 / 3600)
    assert math.isnan(out[1, K.F_STAFFED_S]) and math.isnan(out[1, K.F_COST_PER_SALE])
    assert out[0, K.F_COST_PER_CALL] == pytest.approx(out[0, K.F_TOTAL] / 3)
    assert out[1, K.F_AHT_S] == pytest.approx(100.0)


def test_derive_no_handle_time_allocates_nothing() -> None:
    R = np.zeros((2, K.NV), np.int64)
    R[1, K.V_OFFERED] = 4
    out = np.zeros((2, K.NF))
    K.derive(
        R,
        np.array([1000], np.int64),
        60_000,
        np.array([24.0]),
        np.array([1.5, 60.0, 0.0, 0.0]),
        out,
    )
    assert out[1, K.F_TOTAL] == 0.0 and out[0, K.F_TOTAL] > 0
    assert math.isnan(out[0, K.F_COST_PER_CALL]) and math.isnan(out[0, K.F_AHT_S])
    assert out[0, K.F_OCCUPANCY] == 0.0


def ref_compress(ts, cb, vi, amt):
    """Plain Python: sum by (second, combo, quantity), drop zeros, ascending by second."""
    acc: dict[tuple[int, int, int], int] = {}
    for t, c, v, a in zip(ts.tolist(), cb.tolist(), vi.tolist(), amt.tolist(), strict=True):
        key = ((t // 1000) * 1000, c, v)
        acc[key] = acc.get(key, 0) + a
    return sorted((k, a) for k, a in acc.items() if a != 0)


# the dense accumulator, the counting sort, and argsort (seconds far apart)
@pytest.mark.parametrize(("nsec", "seed"), [(3, 0), (50, 1), (9_000, 2), (10**9, 3)])
def test_compress_matches_python(nsec: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, ncb = 2000, 5
    base = 1_700_000_000_000
    ts = rng.integers(base, base + nsec * 1000, n).astype(np.int64)
    cb = rng.integers(0, ncb, n).astype(np.int64)
    vi = rng.integers(0, K.NV, n).astype(np.int64)
    amt = rng.integers(-2, 3, n).astype(np.int64)  # many cancel to zero
    out = [np.empty(n, np.int64) for _ in range(4)]
    m = K.compress(ts, cb, vi, amt, np.int64(base), nsec, ncb, *out)
    got = sorted(
        ((int(out[0][i]), int(out[1][i]), int(out[2][i])), int(out[3][i])) for i in range(m)
    )
    assert got == ref_compress(ts, cb, vi, amt)
    assert np.all(np.diff(out[0][:m]) >= 0)
    assert (nsec * ncb * K.NV > K.DENSE_LIMIT) == (nsec > 100)
