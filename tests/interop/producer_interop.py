"""Our producer, read by librdkafka: every codec, keys, values, headers, timestamps, and
Java-compatible partitioning compared with librdkafka's murmur2_random partitioner.

Usage: producer_interop.py BROKER_BINARY INTEROP_PRODUCE_BINARY
"""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "kafka-broker", "tests", "interop"))
from interop_common import check, finish, start_broker  # noqa: E402

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402

RECORDS = 1000
# Recent timestamps: the broker deletes records older than log.retention.ms, as Kafka does.
BASE = int(time.time() * 1000) - 60_000
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def expected(i):
    return {
        "key": f"key-{i % 50}".encode(),
        "headers": [("trace", i.to_bytes(8, "big")), ("empty", None)],
        "timestamp": BASE + i,
    }


def read_all(bootstrap, topic, partitions):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False,
                  "check.crcs": True, "enable.partition.eof": True})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    records, eof = [], set()
    while len(eof) < partitions:
        m = c.poll(10)
        if m is None:
            break
        if m.error():
            if m.error().code() == -191:  # _PARTITION_EOF
                eof.add(m.partition())
                continue
            raise SystemExit(f"consume error: {m.error()}")
        records.append(m)
    c.close()
    return records


def main():
    broker_bin, produce_bin = sys.argv[1], sys.argv[2]
    proc, bootstrap = start_broker(broker_bin, brokers=3, partitions=2)
    try:
        out = subprocess.run([produce_bin, "--bootstrap-server", bootstrap, "--topic-prefix", "interop",
                              "--records", str(RECORDS), "--base-timestamp", str(BASE)], capture_output=True, text=True, timeout=300)
        check("our producer ran", out.returncode == 0, out.stderr[-2000:])
        for codec in CODECS:
            topic = f"interop-{codec}"
            records = read_all(bootstrap, topic, 2)
            check(f"{codec}: librdkafka read every record", len(records) == RECORDS, f"got {len(records)}")
            bad = []
            ours = {}
            for m in records:
                value = json.loads(m.value())
                i = value["n"]
                e = expected(i)
                ours[m.key()] = m.partition()
                if m.key() != e["key"] or value != {"n": i, "text": "abc" * (i % 20)}:
                    bad.append(("key/value", i))
                if m.headers() != e["headers"]:
                    bad.append(("headers", i, m.headers()))
                if m.timestamp() != (1, e["timestamp"]):  # (TIMESTAMP_CREATE_TIME, ms)
                    bad.append(("timestamp", i, m.timestamp()))
            check(f"{codec}: keys, values, headers and timestamps match", not bad, str(bad[:3]))
            seen = sorted(json.loads(m.value())["n"] for m in records)
            check(f"{codec}: each record exactly once", seen == list(range(RECORDS)))
            # Per partition, records are in the order they were sent.
            in_order = all(
                [json.loads(m.value())["n"] for m in records if m.partition() == p]
                == sorted(json.loads(m.value())["n"] for m in records if m.partition() == p)
                for p in range(2))
            check(f"{codec}: per-partition order", in_order)
        # Keyed partitioning: librdkafka with partitioner=murmur2_random puts each key where we did.
        p = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random"})
        placed = {}

        def report(err, msg):
            if err is None:
                placed[msg.key()] = msg.partition()

        for k in range(50):
            p.produce("interop-none", key=f"key-{k}".encode(), value=b"x", on_delivery=report)
        p.flush(30)
        ours = {m.key(): m.partition() for m in read_all(bootstrap, "interop-zstd", 2)}
        mismatched = [k for k, part in placed.items() if ours.get(k) != part]
        check("murmur2: our partition for every key equals librdkafka's murmur2_random",
              len(placed) == 50 and not mismatched, str(mismatched[:5]))
    finally:
        proc.kill()
    finish()


if __name__ == "__main__":
    main()
