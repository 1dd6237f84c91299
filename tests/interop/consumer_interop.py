"""Our consumer and librdkafka's in one group: for the range and the cooperative-sticky
assignor, two `interop-consume` processes and two confluent-kafka consumers share a
6-partition topic. Checks that the partitions are split among all four with one owner at a
time (the members' rebalance logs, and the AdminClient's describe_consumer_groups), that every
record is consumed (duplicates only where a partition changed owner), that when one of ours and
one librdkafka member leave the other two take over, and that the final committed offsets are
the end offsets. Each flow has both clients lead the group at some point (so each assigns
partitions to the other's members from the other's subscription metadata, checked from
librdkafka's JoinGroup log lines), and neither side logs a warning about the other. Then one
of ours alone in a new group reads the whole topic and exits by itself after --max-idle-ms.

The 20,000 records are produced in three parts: 12,000 before the members start, 4,000 once
all four share the partitions, 4,000 after two have left.

Usage: consumer_interop.py BROKER_BINARY INTEROP_CONSUME_BINARY
(CONSUMER_INTEROP_TIMEOUT=SECONDS bounds each wait, default 90.)
"""
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "kafka-broker", "tests", "interop"))
from interop_common import check, finish, start_broker  # noqa: E402

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

PARTITIONS = 6
RECORDS = 20_000
PHASES = [12_000, 4_000, 4_000]
TIMEOUT = int(os.environ.get("CONSUMER_INTEROP_TIMEOUT", "90"))
# Faster rebalances than the defaults (3 s heartbeats), the same for every member.
GROUP_SETTINGS = {"session.timeout.ms": "10000", "heartbeat.interval.ms": "500"}


def value_of(strategy, i):
    return f"{strategy}-{i:05d}"


class Ours:
    """One `interop-consume` process."""

    def __init__(self, binary, name, bootstrap, topic, group, strategy, workdir, max_idle_ms=600_000):
        self.name = name
        self.out = os.path.join(workdir, f"{name}.out")
        self.err_path = os.path.join(workdir, f"{name}.err")
        self.err = open(self.err_path, "w")
        args = [binary, "--bootstrap-server", bootstrap, "--topic", topic, "--group", group,
                "--strategy", strategy, "--out", self.out, "--max-idle-ms", str(max_idle_ms),
                "--consumer-property", f"client.id={name}"]
        for k, v in GROUP_SETTINGS.items():
            args += ["--consumer-property", f"{k}={v}"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=self.err)
        self.stopped_at = None

    def records(self):
        """(partition, offset, value) of every line written so far."""
        out = []
        try:
            with open(self.out) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) == 3 and line.endswith("\n"):
                        out.append((int(parts[0]), int(parts[1]), parts[2]))
        except FileNotFoundError:
            pass
        return out

    def events(self):
        """(time, kind, partitions) of the assignment changes it logged."""
        out = []
        with open(self.err_path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 4 and parts[0] == "INTEROP" and parts[1] in ("assigned", "revoked", "lost"):
                    ps = [] if parts[3] == "-" else [int(p) for p in parts[3].split(",")]
                    out.append((float(parts[2]), parts[1], ps))
        return out

    def stderr(self):
        with open(self.err_path) as f:
            return f.read()

    def stop(self, timeout=30):
        """SIGTERM, then wait for a clean exit; returns the exit code (None if it hung)."""
        self.stopped_at = time.time()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return None

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.err.close()


class JoinLog(logging.Handler):
    """Keeps librdkafka's "JoinGroup response" debug lines: (generation, whether it leads)."""

    def __init__(self):
        super().__init__()
        self.joins = []
        self.warnings = []

    def emit(self, record):
        msg = record.getMessage()
        if record.levelno >= logging.WARNING:
            self.warnings.append(msg)
        m = re.search(r"JoinGroup response: GenerationId (\d+).*?LeaderId \S+?( \(me\))?,", msg)
        if m:
            self.joins.append((int(m.group(1)), bool(m.group(2))))


class Theirs:
    """One librdkafka consumer (confluent-kafka), polled from the main loop."""

    def __init__(self, name, bootstrap, topic, group, strategy):
        self.name = name
        self.recs = []
        self.evs = []
        self.commit_failures = 0
        self.stopped_at = None
        self.join_log = JoinLog()
        logger = logging.getLogger(f"librdkafka.{name}")
        logger.propagate = False
        logger.setLevel(logging.DEBUG)
        logger.addHandler(self.join_log)
        self.consumer = Consumer({
            # Only to learn from its JoinGroup responses when it was the group's leader.
            "debug": "cgrp",
            "logger": logger,
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "client.id": name,
            "partition.assignment.strategy": strategy,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            **GROUP_SETTINGS,
        })
        self.consumer.subscribe([topic], on_assign=self.on_assign, on_revoke=self.on_revoke, on_lost=self.on_lost)

    def on_assign(self, consumer, partitions):
        self.evs.append((time.time(), "assigned", sorted(tp.partition for tp in partitions)))

    def on_revoke(self, consumer, partitions):
        self.evs.append((time.time(), "revoked", sorted(tp.partition for tp in partitions)))

    def on_lost(self, consumer, partitions):
        self.evs.append((time.time(), "lost", sorted(tp.partition for tp in partitions)))

    def poll(self):
        """One batch: keep the records, then commit what was consumed."""
        if self.stopped_at is not None:
            return
        msgs = self.consumer.consume(num_messages=500, timeout=0.05)
        got = False
        for m in msgs:
            if m.error():
                print(f"     {self.name}: {m.error()}")
                continue
            self.recs.append((m.partition(), m.offset(), m.value().decode()))
            got = True
        if got:
            try:
                self.consumer.commit(asynchronous=False)
            except KafkaException as e:
                # Refused during a rebalance: the partition's next owner reads these again.
                self.commit_failures += 1
                print(f"     {self.name}: commit refused: {e.args[0].name()}")

    def records(self):
        return list(self.recs)

    def events(self):
        return list(self.evs)

    def stop(self):
        self.stopped_at = time.time()
        self.consumer.close()


def produce(bootstrap, topic, strategy, first, count):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    for i in range(first, first + count):
        p.produce(topic, value=value_of(strategy, i).encode(), partition=i % PARTITIONS)
    return p.flush(30) == 0


def pump(theirs, cond, timeout=TIMEOUT):
    """Polls the librdkafka members until `cond()` holds (checked every ~0.2 s)."""
    deadline = time.time() + timeout
    next_check = 0
    while time.time() < deadline:
        for t in theirs:
            t.poll()
        if time.time() >= next_check:
            if cond():
                return True
            next_check = time.time() + 0.2
    return False


def describe(admin, group):
    """(state, {client id: sorted partitions}) from describe_consumer_groups."""
    try:
        d = admin.describe_consumer_groups([group])[group].result(timeout=10)
    except KafkaException as e:
        return (f"error {e}", {})
    return (str(d.state), {m.client_id: sorted(tp.partition for tp in m.assignment.topic_partitions)
                           for m in d.members})


def split_among(admin, group, names):
    """A condition: the group is stable, its members are exactly `names`, each owns at least
    one partition, and they own all partitions exactly once."""
    last = {}

    def cond():
        state, members = describe(admin, group)
        last["state"], last["members"] = state, members
        owned = sorted(p for ps in members.values() for p in ps)
        return (state.endswith("STABLE") and sorted(members) == sorted(names)
                and all(members.values()) and owned == list(range(PARTITIONS)))
    return cond, last


def held_now(member):
    """The partitions a member's rebalance log says it holds now."""
    held = set()
    for _, kind, parts in sorted(member.events(), key=lambda e: e[0]):
        if kind == "assigned":
            held |= set(parts)
        else:
            held -= set(parts)
    return sorted(held)


def ownership_violations(members, end_time):
    """Partitions owned by two members at the same time, from their logged rebalances:
    [(partition, member a, interval a, member b, interval b)]."""
    intervals = {p: [] for p in range(PARTITIONS)}  # p -> [(start, end, member)]
    for m in members:
        held = {}
        for ts, kind, parts in sorted(m.events(), key=lambda e: e[0]):
            for p in parts:
                if kind == "assigned":
                    held.setdefault(p, ts)
                elif p in held:
                    intervals[p].append((held.pop(p), ts, m.name))
        # Whatever the member still held when it was stopped (or at the end).
        for p, start in held.items():
            intervals[p].append((start, m.stopped_at or end_time, m.name))
    bad = []
    for p, ivs in intervals.items():
        ivs.sort()
        for i, (s1, e1, n1) in enumerate(ivs):
            for s2, e2, n2 in ivs[i + 1:]:
                if n1 != n2 and s2 < e1:
                    bad.append((p, n1, (s1, e1), n2, (s2, e2)))
    return bad, intervals


def duplicate_runs(reads):
    """Per partition, the duplicated offsets grouped into runs of consecutive offsets."""
    count = {}
    for p, o, _ in reads:
        count[(p, o)] = count.get((p, o), 0) + 1
    runs = {}
    for p in range(PARTITIONS):
        dup = sorted(o for (q, o), c in count.items() if q == p and c > 1)
        r = 0
        for i, o in enumerate(dup):
            if i == 0 or o != dup[i - 1] + 1:
                r += 1
        runs[p] = (len(dup), r)
    return runs


def group_flow(bootstrap, admin, binary, strategy, workdir):
    topic, group = f"mixed-{strategy}", f"mixed-group-{strategy}"
    for f in admin.create_topics([NewTopic(topic, PARTITIONS, 1)], operation_timeout=10).values():
        f.result(timeout=10)
    check(f"{strategy}: produced the first {PHASES[0]} records", produce(bootstrap, topic, strategy, 0, PHASES[0]))

    ours, theirs = [], []
    try:
        # Staggered starts: every join is a rebalance of a group that is consuming. The first
        # member leads the group; when it leaves, the bundled broker makes the earliest
        # remaining member leader. So with range ours leads first and librdkafka after the
        # departures, with cooperative-sticky the other way round.
        order = ["ours", "theirs", "theirs", "ours"] if strategy == "range" else ["theirs", "ours", "ours", "theirs"]
        for kind in order:
            if kind == "ours":
                ours.append(Ours(binary, f"ours-{strategy}-{len(ours) + 1}", bootstrap, topic, group, strategy,
                                 workdir))
            else:
                theirs.append(Theirs(f"rdkafka-{strategy}-{len(theirs) + 1}", bootstrap, topic, group, strategy))
            pump(theirs, lambda: False, timeout=0.5)
        everyone = ours + theirs
        names = [m.name for m in everyone]

        def all_reads():
            return [r for m in everyone for r in m.records()]

        def distinct_values():
            return {v for _, _, v in all_reads()}

        cond, last = split_among(admin, group, names)
        ok = pump(theirs, cond)
        check(f"{strategy}: describe_consumer_groups: stable, 4 members, the 6 partitions split among all",
              ok, last)
        if ok and strategy == "range":
            check(f"{strategy}: range gives 2, 2, 1 and 1 partitions",
                  sorted(len(ps) for ps in last["members"].values()) == [1, 1, 2, 2], last["members"])
        running = [m.name for m in ours if m.proc.poll() is not None]
        check(f"{strategy}: our members are running", not running, [m.stderr()[-2000:] for m in ours])

        check(f"{strategy}: produced {PHASES[1]} more records",
              produce(bootstrap, topic, strategy, PHASES[0], PHASES[1]))
        upto = PHASES[0] + PHASES[1]
        ok = pump(theirs, lambda: len(distinct_values()) >= upto)
        check(f"{strategy}: the four members consumed the first {upto} records", ok, len(distinct_values()))
        readers = {m.name: len(m.records()) for m in everyone}
        check(f"{strategy}: every member consumed records", all(readers.values()), readers)
        # The members' own view agrees with the broker's: what each member's log says it
        # owns now is what describe_consumer_groups says.
        state, members = describe(admin, group)
        from_logs = {m.name: held_now(m) for m in everyone}
        check(f"{strategy}: the members' rebalance logs match describe_consumer_groups",
              from_logs == members, (from_logs, members))

        # One of ours and one librdkafka member leave; the other two take over.
        code = ours[0].stop()
        check(f"{strategy}: {ours[0].name} exits cleanly on SIGTERM", code == 0, ours[0].stderr()[-2000:])
        theirs[0].stop()
        remaining = [ours[1].name, theirs[1].name]
        cond, last = split_among(admin, group, remaining)
        ok = pump(theirs[1:], cond)
        check(f"{strategy}: after two left, the other two own all 6 partitions", ok, last)

        check(f"{strategy}: produced the last {PHASES[2]} records",
              produce(bootstrap, topic, strategy, upto, PHASES[2]))
        ok = pump(theirs[1:], lambda: len(distinct_values()) >= RECORDS)
        check(f"{strategy}: every record was consumed", ok, len(distinct_values()))
        late = {m.name for m in everyone for (_, _, v) in m.records() if int(v.rsplit("-", 1)[1]) >= upto}
        check(f"{strategy}: the last records were read by the two remaining members", late <= set(remaining)
              and len(late) == 2, late)

        # Stop the rest, then compare the committed offsets with the end offsets.
        code = ours[1].stop()
        check(f"{strategy}: {ours[1].name} exits cleanly on SIGTERM", code == 0, ours[1].stderr()[-2000:])
        theirs[1].stop()
        end_time = time.time()

        reads = all_reads()
        values = [v for _, _, v in reads]
        expected = {value_of(strategy, i) for i in range(RECORDS)}
        check(f"{strategy}: the union of all outputs is exactly the {RECORDS} records", set(values) == expected,
              (len(set(values)), len(set(values) - expected), len(expected - set(values))))
        # A value always comes with the same partition and offset.
        where = {}
        inconsistent = []
        for p, o, v in reads:
            first = where.setdefault(v, (p, o))
            if first != (p, o):
                inconsistent.append((v, first, (p, o)))
        check(f"{strategy}: a record read twice has the same partition and offset", not inconsistent, inconsistent[:3])
        bad, intervals = ownership_violations(everyone, end_time)
        check(f"{strategy}: each partition had one owner at a time (rebalance logs)", not bad, bad[:3])
        handovers = {p: max(0, len(ivs) - 1) for p, ivs in intervals.items()}
        runs = duplicate_runs(reads)
        duplicates = len(reads) - len(set((p, o) for p, o, _ in reads))
        print(f"     {strategy}: {len(reads)} records read, {duplicates} duplicates; per partition "
              f"(duplicates, runs, handovers): {[(runs[p][0], runs[p][1], handovers[p]) for p in range(PARTITIONS)]}; "
              f"reads per member {dict((m.name, len(m.records())) for m in everyone)}; "
              f"librdkafka commit failures {sum(t.commit_failures for t in theirs)}, "
              f"ours {sum(m.stderr().count('commit:') for m in ours)}")
        check(f"{strategy}: duplicates only around rebalances (each run of re-read offsets follows a handover)",
              all(runs[p][1] <= handovers[p] for p in range(PARTITIONS)), (runs, handovers))

        # Neither side complained about the other: our client's warnings and errors (for
        # example an undecodable subscription in the leader) and librdkafka's.
        ours_warnings = [line for m in ours for line in m.stderr().splitlines() if " WARN " in line or " ERROR " in line]
        theirs_warnings = [w for t in theirs for w in t.join_log.warnings]
        print(f"     {strategy}: warnings: ours {len(ours_warnings)} {ours_warnings[:3]}, "
              f"librdkafka {len(theirs_warnings)} {theirs_warnings[:3]}")
        check(f"{strategy}: no member failed to decode another's subscription or assignment",
              not any("undecodable" in w or "decode" in w.lower() for w in ours_warnings + theirs_warnings),
              (ours_warnings[:3], theirs_warnings[:3]))

        generations = {g for t in theirs for g, _ in t.join_log.joins}
        theirs_led = {g for t in theirs for g, me in t.join_log.joins if me}
        ours_led = generations - theirs_led
        print(f"     {strategy}: generations seen by librdkafka members {sorted(generations)}; "
              f"led by librdkafka {sorted(theirs_led)}, by ours {sorted(ours_led)}")
        check(f"{strategy}: both clients led the group (assigned partitions to the other's members)",
              bool(theirs_led) and bool(ours_led), (sorted(theirs_led), sorted(ours_led)))

        probe = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        committed = {tp.partition: tp.offset for tp in probe.committed(tps, timeout=10)}
        ends = {p: probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(PARTITIONS)}
        probe.close()
        check(f"{strategy}: the committed offsets are the end offsets", committed == ends, (committed, ends))
        check(f"{strategy}: the end offsets add up to {RECORDS}", sum(ends.values()) == RECORDS, ends)
        state, members = describe(admin, group)
        check(f"{strategy}: the group is empty after everyone left", state.endswith("EMPTY") and not members,
              (state, members))

        # One of ours alone in a new group reads everything and stops by itself when idle.
        solo = Ours(binary, f"solo-{strategy}", bootstrap, topic, f"solo-{strategy}", strategy, workdir,
                    max_idle_ms=2000)
        try:
            code = solo.proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            code = None
        got = solo.records()
        check(f"{strategy}: a lone interop-consume reads all {RECORDS} records once and exits after --max-idle-ms",
              code == 0 and sorted(v for _, _, v in got) == sorted(expected) and "stopping (idle)" in solo.stderr(),
              (code, len(got), solo.stderr()[-1500:]))
        solo.kill()
    finally:
        for m in ours:
            m.kill()
        for t in theirs:
            if t.stopped_at is None:
                t.stop()


def main():
    broker_bin, consume_bin = sys.argv[1], sys.argv[2]
    proc, bootstrap = start_broker(broker_bin, brokers=3, partitions=3)
    workdir = tempfile.mkdtemp(prefix="consumer-interop-")
    try:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for strategy in ["range", "cooperative-sticky"]:
            group_flow(bootstrap, admin, consume_bin, strategy, workdir)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        print(f"     logs of our members: {workdir}")
    finish()


if __name__ == "__main__":
    main()
