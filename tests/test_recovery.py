"""Recovery (issue 6, item 1; issue 4, a restart mid-firing): the worker checkpoints its
engine into ``callcost-checkpoints`` and, restarted, resumes from there.

Real broker, the worker as a subprocess in one consumer group across restarts, the
``two-centres`` vector through Kafka. Whatever happens to the worker, at the end:

* the last figures message of each centre on ``cost-figures`` is ``expected.json`` at the
  last instant, and ``as_of`` never goes backwards on the topic;
* each centre's alerts on ``cost-alerts`` are ``expected.json``'s, in order, and no
  ``(id, state)`` is there twice: no second ``firing``;
* the dead-letter topic holds each of the 40 bad lines once.

``CALLCOST_RECOVERY_SEED`` picks the kill points of the SIGKILL test (printed; default
20261127). The second half of the file runs the same worker logic on an in-memory model
of Kafka, with kills at random awaits (no broker: fast, and every interleaving the seed
picks). docs/reliability.md lists the faults and how to reproduce them.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from callcost.produce import messages
from tests.support.brokers import produce
from tests.support.processes import log_tail, log_text
from tests.support.progress import log
from tests.support.two_centres import CONFIG, NAME, lines, ts_of
from tests.support.waiting import wait_for
from tests.support.worker import Workers, recovery_lines, wait_assigned
from tests.support.worker_outputs import Outputs, check_outputs
from tests.vectorcheck import VECTORS, alert_mismatches, expected, figure_mismatches

SEED = int(os.environ.get("CALLCOST_RECOVERY_SEED", "20261127"))
#: schedules of the model tests (more: CALLCOST_MODEL_SCHEDULES=400) and the replay
#: chunk they use (CALLCOST_MODEL_CHUNK; small, so that checkpoints and kills fall in
#: the middle of replays)
MODEL_SCHEDULES = int(os.environ.get("CALLCOST_MODEL_SCHEDULES", "16"))
MODEL_CHUNK = int(os.environ.get("CALLCOST_MODEL_CHUNK", "97"))


def test_sigkill_at_random_points(
    kafka_bootstrap: str, kafka_topics: dict[str, str], workers: Workers
) -> None:
    """The vector is produced at a steady pace over ~36 s while the worker is killed
    with SIGKILL six times at random points (seeded) and restarted at once."""
    exp = expected(NAME)
    items = lines()
    rng = random.Random(SEED)
    log(f"seed {SEED} (CALLCOST_RECOVERY_SEED); group {workers.group}")
    produced = [0]
    chunk, pause = 200, 0.4  # about 36 s for the whole vector

    def producer() -> None:
        from kafka import KafkaProducer

        p = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all",
                          max_in_flight_requests_per_connection=1)
        try:
            for i in range(0, len(items), chunk):
                for key, value in items[i : i + chunk]:
                    p.send(kafka_topics["call-events"], key=key, value=value)
                p.flush()
                produced[0] = min(i + chunk, len(items))
                time.sleep(pause)
        finally:
            p.close()

    out = Outputs(kafka_bootstrap, kafka_topics)
    thread = threading.Thread(target=producer, daemon=True)
    t0 = time.monotonic()
    thread.start()
    kills = []
    proc = workers.start()
    try:
        for k in range(6):
            if k == 2:  # one kill while the worker starts or joins the group
                delay = rng.uniform(0.5, 2.5)
                time.sleep(delay)
                when = f"{delay:.2f} s after its start"
            else:
                took = wait_assigned(proc)
                delay = rng.uniform(0.0, 4.0)
                time.sleep(delay)
                when = f"{delay:.2f} s after it owned its partitions ({took:.1f} s after start)"
            if proc.poll() is not None:
                pytest.fail(f"worker exited with {proc.returncode}:\n{log_tail(proc)}")
            workers.kill(proc)
            out.poll()
            kills.append(
                f"kill {k + 1} at t={time.monotonic() - t0:.1f} s, {when}; events produced "
                f"{produced[0]}/{len(items)}; on the topics: {len(out.figures.messages)} "
                f"figures, {len(out.alerts.messages)} alerts, {len(out.dlq.messages)} dead "
                "letters"
            )
            log(kills[-1])
            for line in recovery_lines(proc):
                log(f"    worker {k}: {line}")
            proc = workers.start()
        thread.join(120)
        log(f"all {len(items)} events produced at t={time.monotonic() - t0:.1f} s")
        out.poll()
        # the last worker must be up: the figures may be complete before it starts (the
        # last kill can come after the last event), and it must not send anything twice
        wait_assigned(proc, 120.0)
        wait_for(lambda: out.finished(exp), 90, "the final figures", procs=[proc])
        # stopped, the worker has sent all it ever will: the topics read to their end
        # offsets are final, and nothing sent twice can still be on its way
        assert workers.stop(proc) == 0, log_tail(proc)
        for line in recovery_lines(proc):
            log(f"    final worker: {line}")
        log(f"complete at t={time.monotonic() - t0:.1f} s")
        check_outputs(out, exp)
    finally:
        out.close()


def alert_cut(exp: dict, centre: str) -> tuple[dict, dict]:
    """The centre's first alert that fires and resolves later: (firing, resolved)."""
    alerts = exp["centres"][centre]["alerts"]
    firing = next(a for a in alerts if a["state"] == "firing")
    resolved = next(a for a in alerts if a["id"] == firing["id"] and a["state"] == "resolved")
    return firing, resolved


def first_after(items: list[tuple[bytes | None, bytes]], ts: int) -> int:
    """Index of the first line with a ts after ``ts``."""
    return next(i for i, (_, v) in enumerate(items) if (ts_of(v) or 0) > ts)


def test_clean_restart_mid_firing_sends_no_second_firing(
    kafka_bootstrap: str, kafka_topics: dict[str, str], workers: Workers
) -> None:
    """Issue 4: the alert fires, the worker stops (SIGTERM) and starts again, the alert
    resolves: one firing, one resolved."""
    exp = expected(NAME)
    items = lines()
    firing, resolved = alert_cut(exp, "nyc")
    cut = first_after(items, firing["at"] + 30_000)
    assert (ts_of(items[cut][1]) or 0) < resolved["at"]
    topic = kafka_topics["call-events"]
    out = Outputs(kafka_bootstrap, kafka_topics)
    try:
        produce(kafka_bootstrap, topic, items[:cut])
        first = workers.start()
        fired = (firing["id"], "firing")
        wait_for(lambda: (out.poll(), fired in out.alert_marks())[1], 90,
                 f"{fired} on the alerts topic", procs=[first])
        assert (firing["id"], "resolved") not in out.alert_marks()
        assert workers.stop(first) == 0, log_tail(first)
        assert "checkpoint (shutdown)" in log_text(first)
        log(f"stopped after {fired}: " + "; ".join(recovery_lines(first)[-1:]))
        produce(kafka_bootstrap, topic, items[cut:])
        second = workers.start()
        wait_for(lambda: out.finished(exp), 90, "the final figures", procs=[second])
        assert workers.stop(second) == 0, log_tail(second)  # it has sent all it will
        check_outputs(out, exp)
        marks = out.alert_marks()
        assert marks.count(fired) == 1
        assert marks.index(fired) < marks.index((firing["id"], "resolved"))
        text = log_text(second)
        assert "restored ['nyc']" in text, log_tail(second)
        assert "not sent again" not in text  # nothing replayed that was already out
        for line in recovery_lines(second):
            log(f"    second worker: {line}")
    finally:
        out.close()


def test_sigkill_after_a_firing_replays_without_sending_it_again(
    kafka_bootstrap: str, kafka_topics: dict[str, str], workers: Workers
) -> None:
    """The last checkpoint is before the firing, the kill after it: the replay makes
    the firing again, and the worker does not send it."""
    exp = expected(NAME)
    items = lines()
    firing, _ = alert_cut(exp, "nyc")
    before = first_after(items, firing["at"] - 120_000)
    after = first_after(items, firing["at"] + 30_000)
    topic = kafka_topics["call-events"]
    fired = (firing["id"], "firing")
    out = Outputs(kafka_bootstrap, kafka_topics)
    try:
        produce(kafka_bootstrap, topic, items[:before])
        a = workers.start()
        wait_assigned(a)
        assert workers.stop(a) == 0, log_tail(a)  # checkpoint at shutdown: before the firing
        assert fired not in (out.poll(), out.alert_marks())[1]
        produce(kafka_bootstrap, topic, items[before:after])
        b = workers.start(CONFIG, "--checkpoint-s", "0")  # no checkpoint after A's
        wait_for(lambda: (out.poll(), fired in out.alert_marks())[1], 90,
                 f"{fired} on the alerts topic", procs=[b])
        workers.kill(b)
        log(f"killed after {fired}; B: " + "; ".join(recovery_lines(b)))
        c = workers.start()
        wait_assigned(c)
        produce(kafka_bootstrap, topic, items[after:])
        wait_for(lambda: out.finished(exp), 90, "the final figures", procs=[c])
        assert workers.stop(c) == 0, log_tail(c)  # it has sent all it will
        check_outputs(out, exp)
        text = log_text(c)
        assert f"alert {firing['id']} firing: already on" in text, log_tail(c)
        for line in recovery_lines(c):
            log(f"    C: {line}")
    finally:
        out.close()


def test_checkpoint_under_another_config_is_ignored(
    kafka_bootstrap: str, kafka_topics: dict[str, str], workers: Workers, tmp_path: Path
) -> None:
    """A worker with one more window checkpoints; restarted with the vector's own
    config, the worker refuses those checkpoints, rebuilds from the start of each
    partition, and the figures and alerts are still right (and not sent twice)."""
    exp = expected(NAME)
    items = lines()
    other = tmp_path / "other.toml"
    text = CONFIG.read_text()
    assert 'windows = ["15m", "1h", "8h", "today"]' in text
    other.write_text(text.replace('windows = ["15m", "1h", "8h", "today"]',
                                  'windows = ["15m", "30m", "1h", "8h", "today"]'))
    half = len(items) // 2
    topic = kafka_topics["call-events"]
    out = Outputs(kafka_bootstrap, kafka_topics)
    try:
        produce(kafka_bootstrap, topic, items[:half])
        a = workers.start(other)
        wait_assigned(a)
        time.sleep(1.5)
        assert workers.stop(a) == 0, log_tail(a)
        assert "checkpoint (shutdown)" in log_text(a)
        produce(kafka_bootstrap, topic, items[half:])
        b = workers.start(CONFIG)
        wait_for(lambda: out.finished(exp), 90, "the final figures", procs=[b])
        assert workers.stop(b) == 0, log_tail(b)  # it has sent all it will
        check_outputs(out, exp)
        logged = log_text(b)
        for c in exp["centres"]:
            assert f"centre {c}: checkpoint ignored" in logged, log_tail(b)
        assert "rebuilt from its start" in logged
        for line in recovery_lines(b):
            log(f"    B: {line}")
    finally:
        out.close()


# --------------------------------------------------------------------------------------
# The same worker logic on an in-memory model of Kafka: no broker, no Faust, every
# interleaving the schedule picks. The Pipeline and the Side readers are the real
# ones; only the transport is replaced. A crash cancels every task at an arbitrary
# await, and a random prefix of the messages not yet flushed reaches the "broker".


class ModelRecord:
    __slots__ = ("headers", "key", "offset", "partition", "topic", "value")

    def __init__(self, topic: str, partition: int, offset: int, key: bytes | None,
                 value: bytes | None, headers: list | None) -> None:
        self.topic, self.partition, self.offset = topic, partition, offset
        self.key, self.value, self.headers = key, value, headers or []


class ModelKafka:
    def __init__(self, names: Any, partitions: int = 4) -> None:
        self.logs: dict[str, list[list[ModelRecord]]] = {
            n: [[] for _ in range(partitions)]
            for n in (names.events, names.figures, names.alerts, names.dlq, names.checkpoints)
        }
        self._rr = 0

    def append(self, topic: str, key: bytes | None, value: bytes | None,
               headers: list | None = None) -> None:
        import zlib

        logs = self.logs[topic]
        if key is None:
            self._rr += 1
            p = self._rr % len(logs)
        else:
            p = zlib.crc32(key) % len(logs)
        logs[p].append(ModelRecord(topic, p, len(logs[p]), key, value, headers))


class ModelConsumer:
    """The part of aiokafka's AIOKafkaConsumer that the worker's side reads use."""

    def __init__(self, kafka: ModelKafka, rng: random.Random | None = None) -> None:
        self.kafka = kafka
        self.rng = rng
        self.pos: dict[Any, int] = {}

    async def _answer(self) -> None:
        # Kafka takes a while to answer: the rest goes on, a crash may come
        for _ in range(self.rng.randint(1, 12) if self.rng else 1):
            await asyncio.sleep(0)

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(len(self.kafka.logs[topic])))

    async def beginning_offsets(self, tps: list) -> dict:
        await self._answer()
        return {tp: 0 for tp in tps}

    async def end_offsets(self, tps: list) -> dict:
        await self._answer()
        return {tp: len(self.kafka.logs[tp.topic][tp.partition]) for tp in tps}

    def assign(self, tps: list) -> None:
        self.pos = {tp: self.pos.get(tp, 0) for tp in tps}

    def seek(self, tp: Any, offset: int) -> None:
        self.pos[tp] = offset

    async def position(self, tp: Any) -> int:
        return self.pos[tp]

    async def getmany(self, *tps: Any, timeout_ms: int = 0, max_records: int = 500) -> dict:
        await self._answer()
        out: dict = {}
        for tp, at in self.pos.items():
            log_ = self.kafka.logs[tp.topic][tp.partition]
            got = log_[at : at + max_records]
            if got:
                out[tp] = got
                self.pos[tp] = at + len(got)
                max_records -= len(got)
            if max_records <= 0:
                break
        return out


class ModelTopic:
    def __init__(self, app: ModelApp, name: str) -> None:
        self.app, self.name = app, name

    async def send(self, key: bytes | None = None, value: bytes | None = None,
                   headers: list | None = None) -> asyncio.Future:
        await asyncio.sleep(0)
        fut = asyncio.get_running_loop().create_future()
        self.app.pending.append((self.name, key, value, headers, fut))
        return fut

    def get_topic_name(self) -> str:
        return self.name


class ModelApp:
    """What the Pipeline uses of a Faust app: topics, the producer's flush, crash."""

    def __init__(self, kafka: ModelKafka) -> None:
        self.kafka = kafka
        self.pending: list[tuple] = []
        self.producer = self

    def topic(self, name: str) -> ModelTopic:
        return ModelTopic(self, name)

    async def flush(self) -> None:
        while self.pending:
            name, key, value, headers, fut = self.pending.pop(0)
            self.kafka.append(name, key, value, headers)
            if not fut.done():
                fut.set_result(None)
            await asyncio.sleep(0)

    def kill(self, rng: random.Random) -> None:
        """SIGKILL: what was handed to the producer may or may not have reached Kafka;
        in order, so a prefix did."""
        n = rng.randint(0, len(self.pending))
        for name, key, value, headers, _ in self.pending[:n]:
            self.kafka.append(name, key, value, headers)
        self.pending.clear()

    async def crash(self, exc: BaseException) -> None:  # pragma: no cover
        raise exc  # Faust's app.crash: the worker stops


class ModelEvent:
    __slots__ = ("message",)

    def __init__(self, message: ModelRecord) -> None:
        self.message = message


def model_pipeline(kafka: ModelKafka, names: Any, settings: Any,
                   rng: random.Random | None = None) -> tuple[Any, ModelApp]:
    from callcost.agents.pipeline import Pipeline
    from callcost.agents.side import Side
    from callcost.streams.engine import Engine

    class ModelSide(Side):
        def __init__(self) -> None:
            super().__init__("model")
            self._consumer = ModelConsumer(kafka, rng)

    app = ModelApp(kafka)
    return Pipeline(app, Engine(settings), names, ModelSide(), "model"), app


async def model_run(vector: str, seed: int, crashes: int) -> tuple[ModelKafka, Any, int]:
    """Produce the vector in chunks while one worker consumes, checkpoints and crashes
    ``crashes`` times at random awaits; return the model broker when all is done."""
    from callcost.agents.pipeline import Topics
    from callcost.streams.config import load_settings

    rng = random.Random(seed)
    settings = load_settings(VECTORS / vector / "callcost.toml")
    names = Topics("ev", "fig", "al", "dlq", "ck")
    kafka = ModelKafka(names)
    items = list(messages((VECTORS / vector / "events.jsonl").read_bytes().splitlines()))
    produced = 0
    committed = [0, 0, 0, 0]  # Faust's group offsets: where its stream resumes
    left = crashes
    incarnations = 0
    while True:
        incarnations += 1
        pipe, app = model_pipeline(kafka, names, settings, rng)
        await pipe.assign({0, 1, 2, 3})
        pos, acked = list(committed), list(committed)
        agent: asyncio.Task | None = None
        timer: asyncio.Task | None = None
        taken: list[int] = [0, 0, 0, 0]
        crashed = False
        life = rng.choice([rng.randint(1, 12), rng.randint(3, 80)])  # steps to the crash
        while True:
            r = rng.random()
            life -= 1
            if left and life < 0:
                crashed = True
                break
            if r < 0.25 and produced < len(items):
                n = rng.randint(10, 150)
                for key, value in items[produced : produced + n]:
                    kafka.append(names.events, key, value)
                produced = min(len(items), produced + n)
            elif r < 0.6 and (agent is None or agent.done()):
                if agent is not None:
                    agent.result()
                    acked[:] = taken
                p = rng.randrange(4)
                log_ = kafka.logs[names.events][p]
                batch = [ModelEvent(m) for m in log_[pos[p] : pos[p] + rng.randint(1, 600)]]
                if batch:
                    pos[p] += len(batch)
                    taken = list(pos)
                    agent = asyncio.ensure_future(pipe.consume(batch))
            elif r < 0.7 and (timer is None or timer.done()):
                if timer is not None:
                    timer.result()
                timer = asyncio.ensure_future(pipe.checkpoint())
            else:
                for _ in range(rng.randint(1, 20)):
                    await asyncio.sleep(0)
            idle = (agent is None or agent.done()) and (timer is None or timer.done())
            if (produced == len(items) and not left and idle and not pipe.state.catching_up()
                    and all(pos[p] == len(kafka.logs[names.events][p]) for p in range(4))):
                if agent is not None:
                    agent.result()
                await asyncio.sleep(0.01)
                if not pipe.state.catching_up() and (pipe._catching_up is None
                                             or pipe._catching_up.done()):
                    break
        if not crashed:
            await app.flush()
            return kafka, names, incarnations
        left -= 1
        for task in (agent, timer, pipe._restoring, pipe._catching_up):
            if task is not None and not task.done():
                task.cancel()
        await asyncio.sleep(0)
        app.kill(rng)
        if agent is not None and agent.done() and not agent.cancelled():
            acked[:] = taken
        committed = [rng.randint(committed[p], acked[p]) for p in range(4)]


def model_check(kafka: ModelKafka, names: Any, vector: str) -> None:
    exp = expected(vector)
    figures = [orjson.loads(m.value) for part in kafka.logs[names.figures] for m in part]
    alerts = [orjson.loads(m.value) for part in kafka.logs[names.alerts] for m in part]
    for c, want in exp["centres"].items():
        mine = [f for f in figures if f["centre"] == c]
        as_ofs = [f["as_of"] for f in mine]
        assert as_ofs == sorted(as_ofs), f"{c}: as_of went backwards"
        assert mine[-1]["as_of"] == want["last_instant"]
        at_last = [f for f in want["figures"] if f["as_of"] == want["last_instant"]]
        assert figure_mismatches(mine[-1]["figures"], at_last) == []
        got = [a for a in alerts if a["centre"] == c]
        marks = [(a["id"], a["state"]) for a in got]
        assert len(marks) == len(set(marks)), f"{c}: sent twice: {marks}"
        assert alert_mismatches(got, want["alerts"]) == []
    dlq = [m for part in kafka.logs[names.dlq] for m in part]
    sources = {(dict(m.headers)["callcost-source-partition"],
                dict(m.headers)["callcost-source-offset"]) for m in dlq}
    assert len(dlq) == len(sources) == exp["rejected"]


@pytest.fixture
def small_replay_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replays in many chunks: checkpoints and crashes land between them."""
    from callcost.agents import replay

    monkeypatch.setattr(replay, "REPLAY_CHUNK", MODEL_CHUNK)


@pytest.mark.parametrize("seed", range(MODEL_SCHEDULES))
def test_model_crashes_at_random_awaits(seed: int, small_replay_chunks: None) -> None:
    """``sim-2h`` (3,941 lines, 19 alerts): eight crashes at random awaits."""
    kafka, names, runs = asyncio.run(model_run("sim-2h", seed, 8))
    model_check(kafka, names, "sim-2h")
    assert runs == 9


@pytest.mark.parametrize("seed", range(max(2, MODEL_SCHEDULES // 8)))
def test_model_crashes_two_centres(seed: int, small_replay_chunks: None) -> None:
    kafka, names, _ = asyncio.run(model_run(NAME, 100 + seed, 8))
    model_check(kafka, names, NAME)


def test_model_checkpoint_mid_replay_remembers_what_an_earlier_run_sent(
    small_replay_chunks: None,
) -> None:
    """Run A checkpoints at 30 % of the stream, goes on to the end (sending every
    alert) and is killed. Run B restores A's checkpoint, replays one chunk, checkpoints
    (its state is still before most alerts) and is killed. Run C restores B's
    checkpoint: it must still know every alert A sent."""
    from callcost.agents import replay
    from callcost.agents.pipeline import Topics
    from callcost.streams.config import load_settings

    vector = "sim-2h"
    settings = load_settings(VECTORS / vector / "callcost.toml")
    names = Topics("ev", "fig", "al", "dlq", "ck")
    kafka = ModelKafka(names)
    items = list(messages((VECTORS / vector / "events.jsonl").read_bytes().splitlines()))
    cut = len(items) * 3 // 10
    parts = {0, 1, 2, 3}

    async def settled(pipe: Any) -> None:
        await pipe._restoring
        while pipe._catching_up is not None and not pipe._catching_up.done():
            await asyncio.sleep(0)

    async def feed(pipe: Any, start: list[int]) -> None:
        for p in sorted(parts):
            batch = [ModelEvent(m) for m in kafka.logs[names.events][p][start[p]:]]
            if batch:
                await pipe.consume(batch)

    async def scenario() -> None:
        for key, value in items[:cut]:
            kafka.append(names.events, key, value)
        a, app_a = model_pipeline(kafka, names, settings)
        await a.assign(parts)
        await settled(a)
        await a.checkpoint()
        at = [len(kafka.logs[names.events][p]) for p in range(4)]
        for key, value in items[cut:]:
            kafka.append(names.events, key, value)
        await feed(a, at)
        await app_a.flush()  # every alert is out; no checkpoint after the first
        sent = len([m for part in kafka.logs[names.alerts] for m in part])
        assert sent == len(expected(vector)["centres"]["prg"]["alerts"])

        b, app_b = model_pipeline(kafka, names, settings)

        async def no_catch_up() -> None:
            return None

        b.catch_up = no_catch_up  # B is killed before its replay gets far
        await b.assign(parts)
        await b._restoring
        assert b.state.already_sent  # it read what A sent
        async with b.lock:
            for p, cu in sorted(b.state.catching_up().items()):
                await replay.replay_chunk(b, p, cu.end)
        await b.checkpoint()
        await app_b.flush()

        c, app_c = model_pipeline(kafka, names, settings)
        await c.assign(parts)
        await settled(c)
        await feed(c, [0, 0, 0, 0])  # Faust's stream, from the start: all skipped
        await app_c.flush()

    asyncio.run(scenario())
    model_check(kafka, names, vector)
