"""numba kernels: small typed loops over arrays, writing into ``out``, called on batches.

The engine keeps, per centre, a sorted array of *bookings* (SPEC section 1: a quantity
booked at a timestamp, for the centre and the call's queue, channel and direction keys)
and a sorted array of *session change points* (an agent session opening or closing, by
labour-rate class). Every count is an integer (calls, milliseconds, billed seconds), so
the running sums are exact; money is derived from them only at the end, by
:func:`derive`.

Layouts
-------
bookings:  ``bts int64[n]`` (ms), ``bkey int32[n, 4]`` (key indexes: centre, queue,
           channel, direction; -1 = none), ``bval int64[n, NV]``
sessions:  ``sts int64[m]`` (ms), ``scls int64[m]`` (rate class), ``sdel int64[m]`` (+1/-1)
windows:   ``wlen int64[nw]``: length in ms, or -1 for ``today``
state:     ``R int64[nw, nk, NV]`` window sums, ``SR int64[nw, nc]`` staffed ms by rate
           class, ``nhead int64[nc]`` sessions open at the current instant, ``ntail
           int64[nw, nc]`` sessions open at each fixed window's start
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
    shared = labour + overhead
    centre_handle_ms = R_w[0, V_HANDLE_MS]
    for k in range(nk):
        handled = R_w[k, V_HANDLED]
        handle_ms = R_w[k, V_HANDLE_MS]
        tel = (R_w[k, V_BILL_IN_S] * rates[R_TEL_IN] + R_w[k, V_BILL_OUT_S] * rates[R_TEL_OUT]) / 60.0
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
def sweep(
    bts, bkey, bval, sts, scls, sdel,
    t0, n_inst, wlen, today_start, midnights,
    R, SR, nhead, ntail,
    labour_rates, rates, outw, out_handled, out_cpc,
):  # fmt: skip
    """Advance every window from instant ``t0`` by ``n_inst`` whole seconds.

    On entry ``R``/``SR``/``nhead``/``ntail`` hold the sums as of ``t0``; on return, as
    of ``t0 + n_inst * 1000``. For each instant ``i`` and each window ``w`` with
    ``outw[w] >= 0`` it writes handled and cost per call (NaN when null) of every key
    into ``out_handled[i, outw[w], :]`` and ``out_cpc[i, outw[w], :]``. ``midnights``
    holds the local midnights after ``t0``, ascending; returns the new ``today_start``.
    """
    nw = wlen.shape[0]
    nb = bts.shape[0]
    ns = sts.shape[0]
    nc = nhead.shape[0]
    nk = R.shape[1]
    h = np.searchsorted(bts, t0)
    hs = np.searchsorted(sts, t0)
    tb = np.zeros(nw, np.int64)
    tsx = np.zeros(nw, np.int64)
    for w in range(nw):
        if wlen[w] >= 0:
            tb[w] = np.searchsorted(bts, t0 - wlen[w])
            tsx[w] = np.searchsorted(sts, t0 - wlen[w])
    acc = np.zeros(nc, np.int64)
    fig = np.empty((nk, NF), np.float64)
    mi = 0
    nmid = midnights.shape[0]
    T = t0
    for i in range(n_inst):
        T += 1000
        # bookings entering every window: [T - 1000, T)
        while h < nb and bts[h] < T:
            for w in range(nw):
                for j in range(4):
                    k = bkey[h, j]
                    if k >= 0:
                        for v in range(NV):
                            R[w, k, v] += bval[h, v]
            h += 1
        # staffed ms entering: sessions open through [T - 1000, T)
        for c in range(nc):
            acc[c] = nhead[c] * 1000
        while hs < ns and sts[hs] < T:
            c = scls[hs]
            acc[c] += sdel[hs] * (T - sts[hs])
            nhead[c] += sdel[hs]
            hs += 1
        for w in range(nw):
            for c in range(nc):
                SR[w, c] += acc[c]
        # leaving the fixed windows: [S - 1000, S)
        for w in range(nw):
            if wlen[w] < 0:
                continue
            S = T - wlen[w]
            while tb[w] < nb and bts[tb[w]] < S:
                b = tb[w]
                for j in range(4):
                    k = bkey[b, j]
                    if k >= 0:
                        for v in range(NV):
                            R[w, k, v] -= bval[b, v]
                tb[w] += 1
            for c in range(nc):
                acc[c] = ntail[w, c] * 1000
            while tsx[w] < ns and sts[tsx[w]] < S:
                p = tsx[w]
                c = scls[p]
                acc[c] += sdel[p] * (S - sts[p])
                ntail[w, c] += sdel[p]
                tsx[w] += 1
            for c in range(nc):
                SR[w, c] -= acc[c]
        # a new local day empties `today`
        while mi < nmid and midnights[mi] <= T:
            today_start = midnights[mi]
            mi += 1
            for w in range(nw):
                if wlen[w] < 0:
                    R[w, :, :] = 0
                    SR[w, :] = 0
        for w in range(nw):
            j = outw[w]
            if j < 0:
                continue
            length = wlen[w] if wlen[w] >= 0 else T - today_start
            derive(R[w], SR[w], length, labour_rates, rates, fig)
            for k in range(nk):
                out_handled[i, j, k] = R[w, k, V_HANDLED]
                out_cpc[i, j, k] = fig[k, F_COST_PER_CALL]
    return today_start


def warm_up() -> None:
    """Compile the kernels (or load them from numba's cache) before consuming."""
    nk, nw, nc = 2, 2, 1
    R = np.zeros((nw, nk, NV), np.int64)
    SR = np.zeros((nw, nc), np.int64)
    out_h = np.zeros((1, 1, nk), np.int64)
    out_c = np.zeros((1, 1, nk), np.float64)
    sweep(
        np.zeros(0, np.int64), np.zeros((0, 4), np.int32), np.zeros((0, NV), np.int64),
        np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64),
        np.int64(0), 1, np.array([60_000, -1], np.int64), np.int64(0), np.zeros(0, np.int64),
        R, SR, np.zeros(nc, np.int64), np.zeros((nw, nc), np.int64),
        np.ones(nc), np.zeros(NR), np.array([0, -1], np.int64), out_h, out_c,
    )  # fmt: skip
    derive(R[0], SR[0], 1000, np.ones(nc), np.zeros(NR), np.zeros((nk, NF)))
