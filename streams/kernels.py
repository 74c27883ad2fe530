"""numba kernels: small typed loops over arrays, writing into ``out``, called on batches.

The engine keeps, per centre, a sorted array of booked *atoms* (SPEC section 1: one
quantity booked at a timestamp, for one *combo*, the (queue, channel, direction) of a
call) and a sorted array of *session change points* (an agent session opening or
closing, by labour-rate class). Keys are sums of combos: the centre is all of them, a
queue those with that queue, and so on; a centre has a handful of combos, so sums are
kept by combo and turned into keys only when a figure is derived. Every quantity is an
integer (calls, milliseconds, billed seconds), so all sums are exact; money is derived
from them only at the end, by :func:`derive`.

Sums are cumulative: ``C`` holds everything booked before the current instant T, and
``Ct[w]`` everything booked before window w's start S; the window holds ``C - Ct[w]``.
So an atom costs one addition when it enters and one per fixed window when it leaves;
``today`` costs nothing per atom: at local midnight ``Ct[today] = C``.

Layouts
-------
atoms:     ``ats int64[n]`` (ms), ``acb int64[n]`` (combo), ``avi int64[n]`` (which
           quantity, a ``V_*`` index), ``aamt int64[n]`` (how much; negative to take a
           booking back)
combos:    ``combo_keys int64[ncb, 4]``: the key indexes of each combo (centre 0, queue,
           channel, direction)
sessions:  ``sts int64[m]`` (ms), ``scls int64[m]`` (rate class), ``sdel int64[m]`` (+1/-1)
windows:   ``wlen int64[nw]``: length in ms, or -1 for ``today``
state:     ``C int64[ncb, NV]`` and ``Ct int64[nw, ncb, NV]``: cumulative sums at T and
           at each window's start; ``CS int64[nc]`` and ``CSt int64[nw, nc]``: cumulative
           staffed ms by rate class, likewise; ``nhead int64[nc]`` sessions open at T,
           ``ntail int64[nw, nc]`` sessions open at each fixed window's start
rates:     ``rates float64[NR]``: see the R_* indexes
"""

from __future__ import annotations

import numpy as np
from numba import njit

# booked values (int64)
V_OFFERED, V_HANDLED, V_ABANDONED, V_CONVERSIONS, V_HANDLE_MS, V_BILL_IN_S, V_BILL_OUT_S = range(7)
NV = 7
# derived figure fields (float64; NaN means null)
(
    F_OFFERED,
    F_HANDLED,
    F_ABANDONED,
    F_CONVERSIONS,
    F_HANDLE_S,
    F_TELEPHONY,
    F_LABOUR,
    F_OVERHEAD,
    F_TOTAL,
    F_AHT_S,
    F_COST_PER_CALL,
    F_COST_PER_SALE,
    F_STAFFED_S,
    F_OCCUPANCY,
) = range(14)
NF = 14
FIELD_NAMES = (
    "offered",
    "handled",
    "abandoned",
    "conversions",
    "handle_s",
    "telephony",
    "labour",
    "overhead",
    "total",
    "aht_s",
    "cost_per_call",
    "cost_per_sale",
    "staffed_s",
    "occupancy",
)
# rates vector
R_SEAT, R_FIXED, R_TEL_IN, R_TEL_OUT = range(4)
NR = 4
MS_PER_HOUR = 3_600_000.0
DENSE_LIMIT = 1 << 18  # cells of compress's dense accumulator (2 MiB)


@njit(cache=True, nogil=True)
def derive(R_w, SR_w, length_ms, labour_rates, rates, out):
    """Figures of every key of one window from its integer sums.

    ``R_w int64[nk, NV]``, ``SR_w int64[nc]``, ``length_ms`` = T - S;
    writes ``out float64[nk, NF]``; key 0 is the centre.
    """
    nk = R_w.shape[0]
    staffed_ms = 0
    labour = 0.0
    for c in range(SR_w.shape[0]):
        staffed_ms += SR_w[c]
        labour += SR_w[c] * labour_rates[c]
    labour /= MS_PER_HOUR
    overhead = (rates[R_FIXED] * length_ms + rates[R_SEAT] * staffed_ms) / MS_PER_HOUR
    centre_handle_ms = R_w[0, V_HANDLE_MS]
    for k in range(nk):
        handled = R_w[k, V_HANDLED]
        handle_ms = R_w[k, V_HANDLE_MS]
        tel = (
            R_w[k, V_BILL_IN_S] * rates[R_TEL_IN] + R_w[k, V_BILL_OUT_S] * rates[R_TEL_OUT]
        ) / 60.0
        if k == 0:
            lab = labour
            ovh = overhead
        elif centre_handle_ms > 0:
            frac = handle_ms / centre_handle_ms
            lab = labour * frac
            ovh = overhead * frac
        else:
            lab = 0.0
            ovh = 0.0
        total = tel + lab + ovh
        o = out[k]
        o[F_OFFERED] = R_w[k, V_OFFERED]
        o[F_HANDLED] = handled
        o[F_ABANDONED] = R_w[k, V_ABANDONED]
        o[F_CONVERSIONS] = R_w[k, V_CONVERSIONS]
        o[F_HANDLE_S] = handle_ms / 1000.0
        o[F_TELEPHONY] = tel
        o[F_LABOUR] = lab
        o[F_OVERHEAD] = ovh
        o[F_TOTAL] = total
        if handled > 0:
            o[F_AHT_S] = handle_ms / 1000.0 / handled
            o[F_COST_PER_CALL] = total / handled
        else:
            o[F_AHT_S] = np.nan
            o[F_COST_PER_CALL] = np.nan
        conv = R_w[k, V_CONVERSIONS]
        o[F_COST_PER_SALE] = total / conv if conv > 0 else np.nan
        if k == 0:
            o[F_STAFFED_S] = staffed_ms / 1000.0
            o[F_OCCUPANCY] = handle_ms / staffed_ms if staffed_ms > 0 else np.nan
        else:
            o[F_STAFFED_S] = np.nan
            o[F_OCCUPANCY] = np.nan


@njit(cache=True, nogil=True)
def combo_to_keys(diff, combo_keys, out):
    """Key sums from combo sums: ``out[k] = sum of diff[cb] over combos cb holding k``."""
    out[:, :] = 0
    for cb in range(diff.shape[0]):
        for j in range(4):
            k = combo_keys[cb, j]
            for v in range(diff.shape[1]):
                out[k, v] += diff[cb, v]


@njit(cache=True, nogil=True)
def sweep(
    ats,
    acb,
    avi,
    aamt,
    sts,
    scls,
    sdel,
    t0,
    n_inst,
    wlen,
    today_start,
    midnights,
    combo_keys,
    C,
    Ct,
    CS,
    CSt,
    nhead,
    ntail,
    labour_rates,
    rates,
    outw,
    out_handled,
    out_cpc,
):
    """Advance every window from instant ``t0`` by ``n_inst`` whole seconds.

    On entry the state holds the sums as of ``t0``; on return, as of
    ``t0 + n_inst * 1000``. For each instant ``i`` and each window ``w`` with
    ``outw[w] >= 0`` it writes handled and cost per call (NaN when null) of every key
    into ``out_handled[i, outw[w], :]`` and ``out_cpc[i, outw[w], :]``. ``midnights``
    holds the local midnights after ``t0``, ascending; returns the new ``today_start``.
    """
    nw = wlen.shape[0]
    na = ats.shape[0]
    ns = sts.shape[0]
    nc = nhead.shape[0]
    ncb = C.shape[0]
    nk = out_handled.shape[2]
    h = np.searchsorted(ats, t0)
    hs = np.searchsorted(sts, t0)
    tb = np.zeros(nw, np.int64)
    tsx = np.zeros(nw, np.int64)
    for w in range(nw):
        if wlen[w] >= 0:
            tb[w] = np.searchsorted(ats, t0 - wlen[w])
            tsx[w] = np.searchsorted(sts, t0 - wlen[w])
    D = np.empty((ncb, NV), np.int64)
    Rw = np.empty((nk, NV), np.int64)
    SRw = np.empty(nc, np.int64)
    fig = np.empty((nk, NF), np.float64)
    mi = 0
    nmid = midnights.shape[0]
    T = t0
    for i in range(n_inst):
        T += 1000
        # atoms entering: [T - 1000, T)
        while h < na and ats[h] < T:
            C[acb[h], avi[h]] += aamt[h]
            h += 1
        # staffed ms: sessions open through [T - 1000, T)
        for c in range(nc):
            CS[c] += nhead[c] * 1000
        while hs < ns and sts[hs] < T:
            c = scls[hs]
            CS[c] += sdel[hs] * (T - sts[hs])
            nhead[c] += sdel[hs]
            hs += 1
        # leaving each fixed window: [S - 1000, S)
        for w in range(nw):
            if wlen[w] < 0:
                continue
            S = T - wlen[w]
            b = tb[w]
            while b < na and ats[b] < S:
                Ct[w, acb[b], avi[b]] += aamt[b]
                b += 1
            tb[w] = b
            for c in range(nc):
                CSt[w, c] += ntail[w, c] * 1000
            p = tsx[w]
            while p < ns and sts[p] < S:
                c = scls[p]
                CSt[w, c] += sdel[p] * (S - sts[p])
                ntail[w, c] += sdel[p]
                p += 1
            tsx[w] = p
        # a new local day: `today` starts from here
        while mi < nmid and midnights[mi] <= T:
            today_start = midnights[mi]
            mi += 1
            for w in range(nw):
                if wlen[w] < 0:
                    Ct[w, :, :] = C
                    CSt[w, :] = CS
        for w in range(nw):
            j = outw[w]
            if j < 0:
                continue
            for cb in range(ncb):
                for v in range(NV):
                    D[cb, v] = C[cb, v] - Ct[w, cb, v]
            combo_to_keys(D, combo_keys, Rw)
            for c in range(nc):
                SRw[c] = CS[c] - CSt[w, c]
            length = wlen[w] if wlen[w] >= 0 else T - today_start
            derive(Rw, SRw, length, labour_rates, rates, fig)
            for k in range(nk):
                out_handled[i, j, k] = Rw[k, V_HANDLED]
                out_cpc[i, j, k] = fig[k, F_COST_PER_CALL]
    return today_start


@njit(cache=True, nogil=True)
def compress(ts, cb, vi, amt, t_base, nsec, ncb, out_ts, out_cb, out_vi, out_amt):
    """Sort atoms by whole second and merge those of the same (second, combo, quantity).

    Windows start and end on whole seconds, so an atom counts the same anywhere in its
    second: merging is exact, and a booking taken back in the same second vanishes.
    Input: atoms with ``t_base <= ts < t_base + nsec * 1000``, in any order. Writes the
    merged atoms, ascending by second, into ``out_*``; returns how many.
    """
    n = ts.shape[0]
    if nsec * ncb * NV <= DENSE_LIMIT:
        # few seconds: one dense accumulator, no sort
        dense = np.zeros((nsec, ncb, NV), np.int64)
        for i in range(n):
            dense[(ts[i] - t_base) // 1000, cb[i], vi[i]] += amt[i]
        m = 0
        for s in range(nsec):
            for c in range(ncb):
                for v in range(NV):
                    if dense[s, c, v] != 0:
                        out_ts[m] = t_base + s * 1000
                        out_cb[m] = c
                        out_vi[m] = v
                        out_amt[m] = dense[s, c, v]
                        m += 1
        return m
    # many seconds: sort by second (counting sort when the seconds are not too sparse),
    # then merge within each second
    if nsec <= 4 * n + 4096:
        start = np.zeros(nsec + 1, np.int64)
        for i in range(n):
            start[(ts[i] - t_base) // 1000 + 1] += 1
        for s in range(nsec):
            start[s + 1] += start[s]
        order = np.empty(n, np.int64)
        for i in range(n):
            s = (ts[i] - t_base) // 1000
            order[start[s]] = i
            start[s] += 1
    else:
        order = np.argsort(ts, kind="mergesort")
    acc = np.zeros((ncb, NV), np.int64)
    seen = np.zeros((ncb, NV), np.bool_)
    touched = np.empty(ncb * NV, np.int64)
    m = 0
    nt = 0
    j = 0
    while j < n:
        sec = t_base + ((ts[order[j]] - t_base) // 1000) * 1000
        while j < n and ts[order[j]] < sec + 1000:
            i = order[j]
            c = cb[i]
            v = vi[i]
            if not seen[c, v]:
                seen[c, v] = True
                touched[nt] = c * NV + v
                nt += 1
            acc[c, v] += amt[i]
            j += 1
        for t in range(nt):
            c = touched[t] // NV
            v = touched[t] % NV
            if acc[c, v] != 0:
                out_ts[m] = sec
                out_cb[m] = c
                out_vi[m] = v
                out_amt[m] = acc[c, v]
                m += 1
            acc[c, v] = 0
            seen[c, v] = False
        nt = 0
    return m


def warm_up() -> None:
    """Compile the kernels (or load them from numba's cache) before consuming."""
    nk, nw, nc = 4, 2, 1
    C = np.zeros((1, NV), np.int64)
    Ct = np.zeros((nw, 1, NV), np.int64)
    out_h = np.zeros((1, 1, nk), np.int64)
    out_c = np.zeros((1, 1, nk), np.float64)
    e = np.zeros(0, np.int64)
    sweep(
        e,
        e,
        e,
        e,
        e,
        e,
        e,
        np.int64(0),
        1,
        np.array([60_000, -1], np.int64),
        np.int64(0),
        e,
        np.array([[0, 1, 2, 3]], np.int64),
        C,
        Ct,
        np.zeros(nc, np.int64),
        np.zeros((nw, nc), np.int64),
        np.zeros(nc, np.int64),
        np.zeros((nw, nc), np.int64),
        np.ones(nc),
        np.zeros(NR),
        np.array([0, -1], np.int64),
        out_h,
        out_c,
    )
    one = np.ones(1, np.int64)
    compress(one, one, one, one, np.int64(0), 1, 2, one.copy(), one.copy(), one.copy(), one.copy())
    R = np.zeros((nk, NV), np.int64)
    combo_to_keys(C, np.array([[0, 1, 2, 3]], np.int64), R)
    derive(R, np.zeros(nc, np.int64), 1000, np.ones(nc), np.zeros(NR), np.zeros((nk, NF)))
