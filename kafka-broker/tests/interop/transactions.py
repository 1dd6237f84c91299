#!/usr/bin/env python3
"""librdkafka (confluent-kafka) transactions against the bundled broker binary: a transactional
producer runs 100 transactions of 10 records over 4 partitions, committing the even ones and
aborting the odd ones, each also committing a consumer group's offsets
(send_offsets_to_transaction with the group metadata of a consumer that joined the group).
The group's committed offset moves only with committed transactions; a read_committed
consumer reads exactly the committed records, in order, and a read_uncommitted one all of
them. A second producer with the same transactional.id fences the first (whose commit fails
with a fatal error) and its records are never visible to read_committed consumers. A
transaction left open past its transaction.timeout.ms is aborted by the broker: the records
another producer commits behind it become readable, its own never, and its producer is fenced.

Usage: python3 transactions.py PATH/TO/kafka-broker
Exits non-zero on any failed check; prints 'N passed, N failed' as its last line.
"""
import sys
import time

from interop_common import check, finish, start_broker
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

PARTITIONS = 4
TRANSACTIONS = 100
PER_TXN = 10
TIMEOUT = 60


def create_topics(admin, *names):
    for f in admin.create_topics([NewTopic(n, PARTITIONS, 3) for n in names], operation_timeout=10).values():
        f.result(timeout=10)


def txn_producer(bootstrap, txn_id, **extra):
    return Producer({
        "bootstrap.servers": bootstrap,
        "transactional.id": txn_id,
        "linger.ms": 5,
        **extra,
    })


def read_all(bootstrap, topic, isolation, expect_at_least=0, timeout=TIMEOUT):
    """Reads every partition of `topic` from the start until each reaches its end (the last
    stable offset for read_committed); with `expect_at_least`, keeps reading until that many
    records arrived. Returns {partition: [(offset, value)]}."""
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"reader-{isolation}-{time.time()}",
        "isolation.level": isolation,
        "enable.partition.eof": True,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    })
    c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    got = {p: [] for p in range(PARTITIONS)}
    at_eof = set()
    deadline = time.time() + timeout
    while time.time() < deadline:
        msg = c.poll(0.2)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                at_eof.add(msg.partition())
                total = sum(len(v) for v in got.values())
                if len(at_eof) == PARTITIONS and total >= expect_at_least:
                    break
                continue
            print(f"     reader: {msg.error()}")
            continue
        at_eof.discard(msg.partition())
        got[msg.partition()].append((msg.offset(), msg.value().decode()))
    c.close()
    return got


def committed_offset(bootstrap, group, topic):
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    tps = probe.committed([TopicPartition(topic, 0)], timeout=10)
    probe.close()
    return tps[0].offset


def commit_and_abort(bootstrap, admin):
    """100 transactions, even ones committed, odd ones aborted, each with the group's offsets."""
    out, source, group = "txn-out", "txn-in", "txn-group"
    create_topics(admin, out, source)
    # A consumer that really joined the group: its metadata (member id, generation) goes with
    # every transactional offset commit.
    seed = Producer({"bootstrap.servers": bootstrap})
    for i in range(TRANSACTIONS + 1):
        seed.produce(source, value=f"in-{i}".encode(), partition=0)
    seed.flush(30)
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
    })
    consumer.subscribe([source])
    deadline = time.time() + TIMEOUT
    while not consumer.assignment() and time.time() < deadline:
        consumer.poll(0.1)
    check("the source consumer joined its group", bool(consumer.assignment()))

    p = txn_producer(bootstrap, "interop-txn")
    p.init_transactions(30)
    committed_values = []
    all_values = []
    offsets_ok = []
    for i in range(TRANSACTIONS):
        p.begin_transaction()
        values = [f"txn-{i}-{j}" for j in range(PER_TXN)]
        for j, v in enumerate(values):
            p.produce(out, value=v.encode(), key=f"k{j}".encode(), partition=j % PARTITIONS)
        all_values.extend(values)
        offsets = [TopicPartition(source, 0, i + 1)]
        p.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), 30)
        # Delivered before the transaction ends: librdkafka's abort would otherwise purge
        # records still queued, and the aborted records must really be in the log.
        delivered = p.flush(30) == 0
        if not delivered:
            check(f"transaction {i}: its records are delivered", False)
        if i % 2 == 0:
            p.commit_transaction(30)
            committed_values.extend(values)
            want = i + 1
        else:
            p.abort_transaction(30)
            want = i  # the previous (committed) transaction's offset
        if i < 6 or i >= TRANSACTIONS - 2:
            offsets_ok.append((i, committed_offset(bootstrap, group, source), want))
    check("the group's committed offset moves only with committed transactions",
          all(got == want for _, got, want in offsets_ok), offsets_ok)
    consumer.close()

    rc = read_all(bootstrap, out, "read_committed", len(committed_values))
    rc_values = [v for p_ in sorted(rc) for _, v in rc[p_]]
    check(f"read_committed sees exactly the {len(committed_values)} committed records",
          sorted(rc_values) == sorted(committed_values), (len(rc_values), len(committed_values)))
    in_order = all(
        [v for _, v in rc[part]] == [v for v in committed_values if int(v.rsplit("-", 1)[1]) % PARTITIONS == part]
        for part in range(PARTITIONS)
    )
    check("read_committed sees each partition's committed records in order", in_order)
    ru = read_all(bootstrap, out, "read_uncommitted", len(all_values))
    ru_values = [v for p_ in sorted(ru) for _, v in ru[p_]]
    check(f"read_uncommitted sees all {len(all_values)} records, aborted ones too",
          sorted(ru_values) == sorted(all_values), (len(ru_values), len(all_values)))
    # Each transaction's marker takes one offset per partition; the last transaction's
    # marker follows the last record.
    last = max(o for o, _ in ru[0])
    check("transaction markers occupy offsets (one per transaction and partition)",
          last + 2 == len(ru[0]) + TRANSACTIONS, (last, len(ru[0])))


def fencing(bootstrap, admin):
    """A second producer with the same transactional.id fences the first."""
    topic = "txn-fenced"
    create_topics(admin, topic)
    p1 = txn_producer(bootstrap, "fence-me")
    p1.init_transactions(30)
    p1.begin_transaction()
    for j in range(PER_TXN):
        p1.produce(topic, value=f"zombie-{j}".encode(), partition=j % PARTITIONS)
    check("the first producer's records are delivered", p1.flush(30) == 0)

    p2 = txn_producer(bootstrap, "fence-me")
    p2.init_transactions(30)
    check("the second producer initializes (fencing the first)", True)

    fatal, name = False, ""
    try:
        p1.commit_transaction(30)
    except KafkaException as e:
        err = e.args[0]
        fatal, name = err.fatal(), err.name()
    check("the fenced producer's commit fails with a fatal error", fatal, name)
    check("the error says it was fenced", name in ("_FENCED", "PRODUCER_FENCED", "INVALID_PRODUCER_EPOCH"), name)

    p2.begin_transaction()
    for j in range(PER_TXN):
        p2.produce(topic, value=f"new-{j}".encode(), partition=j % PARTITIONS)
    p2.commit_transaction(30)
    rc = read_all(bootstrap, topic, "read_committed", PER_TXN)
    values = sorted(v for part in rc.values() for _, v in part)
    check("read_committed sees the new producer's records and none of the zombie's",
          values == sorted(f"new-{j}" for j in range(PER_TXN)), values)


def timeout_abort(bootstrap, admin):
    """A transaction left open past transaction.timeout.ms is aborted by the broker."""
    topic = "txn-timeout"
    create_topics(admin, topic)
    slow = txn_producer(bootstrap, "times-out", **{"transaction.timeout.ms": 6000, "message.timeout.ms": 6000})
    slow.init_transactions(30)
    slow.begin_transaction()
    for j in range(PER_TXN):
        slow.produce(topic, value=f"late-{j}".encode(), partition=j % PARTITIONS)
    check("the slow producer's records are delivered", slow.flush(30) == 0)

    # Another producer commits behind the open transaction: read_committed consumers cannot
    # see its records until the open one is decided (the last stable offset waits for it).
    other = txn_producer(bootstrap, "commits-behind")
    other.init_transactions(30)
    other.begin_transaction()
    for j in range(PER_TXN):
        other.produce(topic, value=f"behind-{j}".encode(), partition=j % PARTITIONS)
    other.commit_transaction(30)
    early = read_all(bootstrap, topic, "read_committed", timeout=3)
    check("while the transaction is open, read_committed sees nothing after it",
          sum(len(v) for v in early.values()) == 0, early)

    # The broker aborts it after 6 s: then the committed records show up.
    rc = read_all(bootstrap, topic, "read_committed", PER_TXN, timeout=TIMEOUT)
    values = sorted(v for part in rc.values() for _, v in part)
    check("after the timeout, read_committed sees the records committed behind it and none of its own",
          values == sorted(f"behind-{j}" for j in range(PER_TXN)), values)

    fatal, name = False, ""
    try:
        slow.commit_transaction(30)
    except KafkaException as e:
        err = e.args[0]
        fatal, name = err.fatal(), err.name()
    check("the timed-out producer cannot commit: it was fenced", fatal, name)


def main():
    proc, bootstrap = start_broker(sys.argv[1], brokers=3, partitions=3)
    try:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        commit_and_abort(bootstrap, admin)
        fencing(bootstrap, admin)
        timeout_abort(bootstrap, admin)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    finish()


if __name__ == "__main__":
    main()
