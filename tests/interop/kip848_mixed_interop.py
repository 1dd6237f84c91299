#!/usr/bin/env python3
"""Our KIP-848 consumer and librdkafka's in one `group.protocol=consumer` group: two
`interop-consume` processes and two confluent-kafka consumers share a 6-partition topic through
the bundled broker's server-side assignment. Checks that all four get partitions, that each
partition has one owner at a time (a partition is assigned to a member only after its previous
owner logged its revocation: our processes' INTEROP lines and librdkafka's callbacks, on one
clock), that when one of ours and one librdkafka member leave the other two take everything
over, that every record is consumed exactly once (every member commits each batch before its
next poll, where revocations run), and that the committed offsets end at the log end offsets.

The 6,000 records arrive in three parts: 3,000 before the members start, 2,000 once all four
share the partitions, 1,000 after two have left.

Usage: kip848_mixed_interop.py BROKER_BINARY INTEROP_CONSUME_BINARY
"""
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "kafka-broker", "tests", "interop"))
from interop_common import check, finish  # noqa: E402

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

PARTITIONS = 6
PHASES = [3_000, 2_000, 1_000]
RECORDS = sum(PHASES)
TIMEOUT = int(os.environ.get("KIP848_INTEROP_TIMEOUT", "60"))
TOPIC = "kip848-mixed"
GROUP = "kip848-mixed-group"


def start_broker(binary):
    """3 brokers; consumer-group heartbeats every 300 ms so that reconciliations are quick."""
    proc = subprocess.Popen(
        [binary, "--listen", "127.0.0.1:0", "--brokers", "3", "--partitions", "3", "--log-level", "warn",
         "--config", "group.consumer.heartbeat.interval.ms=300"],
        stdout=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 30
    while time.time() < deadline:
        line = proc.stdout.readline()
        if line.startswith("bootstrap.servers="):
            return proc, line.strip().split("=", 1)[1]
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit("broker did not start")


class Ours:
    """One `interop-consume` process with group.protocol=consumer."""

    def __init__(self, binary, name, bootstrap, workdir):
        self.name = name
        self.out = os.path.join(workdir, f"{name}.out")
        self.err_path = os.path.join(workdir, f"{name}.err")
        self.err = open(self.err_path, "w")
        self.proc = subprocess.Popen(
            [binary, "--bootstrap-server", bootstrap, "--topic", TOPIC, "--group", GROUP,
             "--out", self.out, "--max-idle-ms", "600000", "--consumer-property", f"client.id={name}",
             "--consumer-property", "group.protocol=consumer"],
            stdout=subprocess.DEVNULL, stderr=self.err)

    def events(self):
        """(time, member, event, partitions) from the INTEROP lines so far."""
        out = []
        with open(self.err_path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 4 and parts[0] == "INTEROP" and parts[1] in ("assigned", "revoked", "lost"):
                    ps = [] if parts[3] == "-" else [int(p) for p in parts[3].split(",")]
                    out.append((float(parts[2]), self.name, parts[1], ps))
        return out

    def records(self):
        try:
            with open(self.out) as f:
                return [line.split() for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def commit_failures(self):
        with open(self.err_path) as f:
            return sum(1 for line in f if "interop-consume: commit:" in line)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        self.err.flush()
        return code


class Theirs:
    """One librdkafka consumer with group.protocol=consumer, polled by this script."""

    def __init__(self, name, bootstrap, events):
        self.name = name
        self.events = events
        self.got = []
        self.commit_failures = 0
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": GROUP, "group.protocol": "consumer",
            "client.id": name, "enable.auto.commit": False, "auto.offset.reset": "earliest",
        })
        self.consumer.subscribe([TOPIC], on_assign=self.on_assign, on_revoke=self.on_revoke,
                                on_lost=self.on_lost)

    def on_assign(self, consumer, partitions):
        self.events.append((time.time(), self.name, "assigned", [tp.partition for tp in partitions]))

    def on_revoke(self, consumer, partitions):
        self.events.append((time.time(), self.name, "revoked", [tp.partition for tp in partitions]))

    def on_lost(self, consumer, partitions):
        self.events.append((time.time(), self.name, "lost", [tp.partition for tp in partitions]))

    def poll(self):
        msg = self.consumer.poll(0.02)
        if msg is None or msg.error():
            return
        self.got.append((msg.partition(), msg.offset(), msg.value().decode()))
        try:
            self.consumer.commit(message=msg, asynchronous=False)
        except KafkaException:
            self.commit_failures += 1

    def close(self):
        self.consumer.close()
        # Whatever close() revoked without a callback is no longer this member's.
        self.events.append((time.time(), self.name, "revoked", list(range(PARTITIONS))))


def ownership(events):
    """Replays the events in time order: the owners now, and every overlap seen."""
    owner = {}
    overlaps = []
    for t, who, event, ps in sorted(events):
        for p in ps:
            if event == "assigned":
                if owner.get(p) not in (None, who):
                    overlaps.append(f"{p} assigned to {who} at {t:.3f} while {owner[p]} owns it")
                owner[p] = who
            elif owner.get(p) == who:
                del owner[p]
    return owner, overlaps


def main():
    broker, bootstrap = start_broker(sys.argv[1])
    workdir = tempfile.mkdtemp(prefix="kip848-mixed-")
    ours = []
    theirs = []
    events = []
    try:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for f in admin.create_topics([NewTopic(TOPIC, PARTITIONS, 3)], operation_timeout=10).values():
            f.result(timeout=10)
        producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
        sent = 0

        def produce(n):
            nonlocal sent
            for i in range(sent, sent + n):
                producer.produce(TOPIC, value=f"mix-{i:05d}".encode(), partition=i % PARTITIONS)
            sent += n
            return producer.flush(30) == 0

        check("produced the first part", produce(PHASES[0]))
        ours = [Ours(sys.argv[2], f"ours-{i}", bootstrap, workdir) for i in (1, 2)]
        theirs = [Theirs(f"librdkafka-{i}", bootstrap, events) for i in (1, 2)]

        def all_events():
            return events + [e for o in ours for e in o.events()]

        def consumed():
            values = [r[2] for o in ours for r in o.records() if len(r) == 3]
            values += [v for m in theirs for (_, _, v) in m.got]
            return values

        def run_until(cond, members):
            deadline = time.time() + TIMEOUT
            while time.time() < deadline:
                for m in members:
                    m.poll()
                if cond():
                    return True
            return False

        def split_among(names):
            def cond():
                owner, _ = ownership(all_events())
                return sorted(owner) == list(range(PARTITIONS)) and set(owner.values()) == set(names)
            return cond

        names = [m.name for m in ours + theirs]
        ok = run_until(split_among(names), theirs)
        owner, _ = ownership(all_events())
        check("two of ours and two librdkafka members share the 6 partitions", ok, owner)

        check("produced the second part", produce(PHASES[1]))
        ok = run_until(lambda: len(set(consumed())) >= PHASES[0] + PHASES[1], theirs)
        check("the first two parts consumed by the four", ok, len(set(consumed())))

        # One of ours leaves (SIGTERM: commit, close, leave heartbeat) and one librdkafka member.
        code = ours[0].stop()
        check("our leaving member exits cleanly", code == 0, code)
        theirs[0].close()
        staying = [ours[1].name, theirs[1].name]
        ok = run_until(split_among(staying), theirs[1:])
        owner, _ = ownership(all_events())
        check("the two staying members take every partition over", ok, owner)

        check("produced the third part", produce(PHASES[2]))
        ok = run_until(lambda: len(set(consumed())) >= RECORDS, theirs[1:])
        check("every record consumed", ok, (len(set(consumed())), RECORDS))

        code = ours[1].stop()
        check("our other member exits cleanly", code == 0, code)
        theirs[1].close()

        _, overlaps = ownership(all_events())
        check("each partition had one owner at a time", not overlaps, overlaps[:5])
        values = consumed()
        missing = {f"mix-{i:05d}" for i in range(RECORDS)} - set(values)
        dupes = len(values) - len(set(values))
        failures = sum(o.commit_failures() for o in ours) + sum(m.commit_failures for m in theirs)
        print(f"     {len(values)} records handed out, {len(set(values))} distinct, {dupes} twice, "
              f"{len(missing)} missing, {failures} failed commits")
        check("nothing lost", not missing, sorted(missing)[:5])
        check("no record consumed twice unless a commit failed", dupes == 0 or failures > 0, (dupes, failures))
        check("each kind of member consumed records",
              all(o.records() for o in ours) and all(m.got for m in theirs),
              ([len(o.records()) for o in ours], [len(m.got) for m in theirs]))

        probe = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP, "enable.auto.commit": False})
        committed = probe.committed([TopicPartition(TOPIC, p) for p in range(PARTITIONS)], timeout=10)
        ends = {p: probe.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=10)[1] for p in range(PARTITIONS)}
        probe.close()
        got = {tp.partition: tp.offset for tp in committed}
        check("the committed offsets are the end offsets", got == ends, (got, ends))
    finally:
        for o in ours:
            if o.proc.poll() is None:
                o.proc.kill()
        broker.kill()
        broker.wait()
    finish()


if __name__ == "__main__":
    main()
