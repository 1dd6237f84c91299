"""Transactions across clients (issue 7, test 5): librdkafka's transactional producer and
ours each write 30 transactions of 10 records to their own topic, aborting every third.
Our read_committed consumer (`interop-consume`) and librdkafka's read_committed consumer must
agree on both topics: exactly the committed records, each once. librdkafka at
read_uncommitted must also see the aborted records ours wrote (so the abort really wrote
records and markers, rather than writing nothing).

Usage: transactions_interop.py BROKER_BINARY INTEROP_PRODUCE_BINARY INTEROP_CONSUME_BINARY
"""
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "kafka-broker", "tests", "interop"))
from interop_common import check, finish, start_broker  # noqa: E402

from confluent_kafka import Consumer, Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

TRANSACTIONS = 30
TIMEOUT = 60


def expected(prefix):
    committed, aborted = set(), set()
    for t in range(TRANSACTIONS):
        values = {f"{prefix}-{t}-{i}" for i in range(10)}
        (aborted if t % 3 == 2 else committed).update(values)
    return committed, aborted


def write_with_librdkafka(bootstrap, topic):
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"{topic}-writer",
                         "linger.ms": 5})
    producer.init_transactions(30)
    for t in range(TRANSACTIONS):
        producer.begin_transaction()
        for i in range(10):
            producer.produce(topic, key=f"k{i}", value=f"lib-{t}-{i}")
        if t % 3 == 2:
            producer.flush(30)
            producer.abort_transaction(30)
        else:
            producer.commit_transaction(30)
    producer.flush(30)


def read_with_librdkafka(bootstrap, topic, isolation, expect_count):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"lib-{topic}-{isolation}",
                         "auto.offset.reset": "earliest", "isolation.level": isolation,
                         "enable.auto.commit": False})
    consumer.subscribe([topic])
    values = []
    deadline = time.time() + TIMEOUT
    idle_since = time.time()
    while time.time() < deadline:
        m = consumer.poll(0.2)
        if m is None:
            # Done once the expected count is reached and nothing more came for 2 s.
            if len(values) >= expect_count and time.time() - idle_since > 2:
                break
            continue
        if m.error():
            continue
        idle_since = time.time()
        values.append(m.value().decode())
    consumer.close()
    return values


def read_with_ours(consume_bin, bootstrap, topic, workdir):
    out = os.path.join(workdir, f"ours-{topic}.out")
    err = os.path.join(workdir, f"ours-{topic}.err")
    with open(err, "w") as e:
        subprocess.run([consume_bin, "--bootstrap-server", bootstrap, "--topic", topic,
                        "--group", f"ours-{topic}", "--strategy", "range", "--out", out,
                        "--max-idle-ms", "3000",
                        "--consumer-property", "isolation.level=read_committed",
                        "--consumer-property", "auto.offset.reset=earliest"],
                       stdout=subprocess.DEVNULL, stderr=e, timeout=TIMEOUT, check=True)
    values = []
    with open(out) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3:
                values.append(parts[2])
    return values


def main():
    broker_bin, produce_bin, consume_bin = sys.argv[1], sys.argv[2], sys.argv[3]
    broker, bootstrap = start_broker(broker_bin, brokers=3, partitions=2)
    try:
        with tempfile.TemporaryDirectory() as workdir:
            admin = AdminClient({"bootstrap.servers": bootstrap})
            for f in admin.create_topics([NewTopic("txn-lib", 2, 3)]).values():
                f.result(30)
            write_with_librdkafka(bootstrap, "txn-lib")
            subprocess.run([produce_bin, "--bootstrap-server", bootstrap, "--topic-prefix", "txn-ours",
                            "--transactions", str(TRANSACTIONS)], check=True, timeout=TIMEOUT,
                           stdout=subprocess.DEVNULL)
            for topic, prefix in (("txn-lib", "lib"), ("txn-ours", "ours")):
                committed, aborted = expected(prefix)
                theirs = read_with_librdkafka(bootstrap, topic, "read_committed", len(committed))
                ours = read_with_ours(consume_bin, bootstrap, topic, workdir)
                check(f"{topic}: librdkafka read_committed sees exactly the committed records",
                      sorted(theirs) == sorted(committed),
                      f"got {len(theirs)}, {len(set(theirs) & aborted)} aborted, want {len(committed)}")
                check(f"{topic}: ours read_committed sees exactly the committed records",
                      sorted(ours) == sorted(committed),
                      f"got {len(ours)}, {len(set(ours) & aborted)} aborted, want {len(committed)}")
                check(f"{topic}: both consumers agree", sorted(ours) == sorted(theirs))
                everything = read_with_librdkafka(bootstrap, topic, "read_uncommitted",
                                                  len(committed) + len(aborted))
                check(f"{topic}: read_uncommitted sees committed and aborted records, each once",
                      sorted(everything) == sorted(committed | aborted),
                      f"got {len(everything)}, want {len(committed | aborted)}")
    finally:
        broker.kill()
        broker.wait()
    finish()


if __name__ == "__main__":
    main()
