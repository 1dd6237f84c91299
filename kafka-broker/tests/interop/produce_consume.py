#!/usr/bin/env python3
"""librdkafka (confluent-kafka) and kcat against the bundled broker binary: produce with
acks=all and enable.idempotence=true in every codec, consume everything back with manually
assigned partitions, list offsets, and create/describe/delete topics and create partitions
with the AdminClient.

Usage: python3 produce_consume.py PATH/TO/kafka-broker
Exits non-zero on any failed check; prints 'N passed, N failed' as its last line.
"""
import shutil
import subprocess
import sys
import time

from interop_common import check, finish, start_broker
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic

RECORDS = 2000




def produce(bootstrap, topic, codec):
    errors = []
    delivered = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        else:
            delivered.append((msg.partition(), msg.offset(), msg.key(), msg.value()))

    p = Producer({
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "compression.type": codec,
        "linger.ms": 5,
        "batch.num.messages": 500,
        "client.id": f"interop-producer-{codec}",
    })
    for i in range(RECORDS):
        key = f"key-{i % 17}".encode()
        value = f"{codec}-value-{i}".encode() * (1 + i % 5)
        p.produce(topic, value=value, key=key, headers=[("i", str(i).encode())], on_delivery=on_delivery)
        if i % 500 == 0:
            p.poll(0)
    left = p.flush(30)
    return left, errors, delivered


def consume(bootstrap, topic, partitions, expected_count):
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "interop-unused",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "client.id": "interop-consumer",
    })
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got = []
    deadline = time.time() + 30
    while len(got) < expected_count and time.time() < deadline:
        msg = c.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            print(f"     consumer error: {msg.error()}")
            continue
        got.append((msg.partition(), msg.offset(), msg.key(), msg.value(), msg.headers()))
    c.close()
    return got


def main():
    proc, bootstrap = start_broker(sys.argv[1], partitions=3)
    try:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for codec in ["none", "gzip", "snappy", "lz4", "zstd"]:
            topic = f"codec-{codec}"
            for f in admin.create_topics([NewTopic(topic, 3, 3)], operation_timeout=10).values():
                f.result(timeout=10)
            left, errors, delivered = produce(bootstrap, topic, codec)
            check(f"{codec}: every record acknowledged", left == 0 and not errors and len(delivered) == RECORDS,
                  f"left={left} errors={errors[:3]} delivered={len(delivered)}")
            per_partition = {}
            for part, off, _, _ in delivered:
                per_partition.setdefault(part, []).append(off)
            dense = all(sorted(o) == list(range(len(o))) for o in per_partition.values())
            check(f"{codec}: offsets dense from 0 per partition", dense)
            got = consume(bootstrap, topic, 3, RECORDS)
            want = sorted((p, o, k, v) for p, o, k, v in delivered)
            have = sorted((p, o, k, v) for p, o, k, v, _ in got)
            check(f"{codec}: consumed exactly what was acknowledged", have == want,
                  f"got {len(have)} want {len(want)}")
            headers_ok = all(h and h[0][0] == "i" for *_, h in got)
            check(f"{codec}: headers survive", headers_ok)

        # Offsets: watermarks and by time.
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": "interop-unused"})
        lo, hi = c.get_watermark_offsets(TopicPartition("codec-none", 0), timeout=10)
        _, _, delivered_none = None, None, None
        check("watermarks: low 0, high > 0", lo == 0 and hi > 0, (lo, hi))
        ts = c.offsets_for_times([TopicPartition("codec-none", 0, 0)], timeout=10)
        check("offsets_for_times(0) is the first offset", ts[0].offset == 0, ts[0])
        future = int(time.time() * 1000) + 3_600_000
        ts = c.offsets_for_times([TopicPartition("codec-none", 0, future)], timeout=10)
        check("offsets_for_times(future) is the end (-1)", ts[0].offset == -1, ts[0])
        c.close()

        # Admin: create partitions, describe, delete.
        fs = admin.create_partitions([NewPartitions("codec-none", 5)], operation_timeout=10)
        try:
            list(fs.values())[0].result(timeout=10)
            md = admin.list_topics("codec-none", timeout=10)
            check("create_partitions grows the topic to 5", len(md.topics["codec-none"].partitions) == 5)
        except KafkaException as e:
            check("create_partitions grows the topic to 5", False, e)
        fs = admin.create_partitions([NewPartitions("codec-none", 2)], operation_timeout=10)
        try:
            list(fs.values())[0].result(timeout=10)
            check("create_partitions refuses a decrease", False)
        except KafkaException as e:
            check("create_partitions refuses a decrease", e.args[0].name() == "INVALID_PARTITIONS", e)
        try:
            from confluent_kafka.admin import ConfigResource
            res = ConfigResource("topic", "codec-gzip")
            configs = admin.describe_configs([res])[res].result(timeout=10)
            check("describe_configs lists retention.ms", "retention.ms" in configs and configs["retention.ms"].value == "604800000",
                  configs.get("retention.ms"))
        except KafkaException as e:
            check("describe_configs lists retention.ms", False, e)
        fs = admin.delete_topics(["codec-zstd"], operation_timeout=10)
        try:
            list(fs.values())[0].result(timeout=10)
            md = admin.list_topics(timeout=10)
            check("delete_topics removes the topic", "codec-zstd" not in md.topics)
        except KafkaException as e:
            check("delete_topics removes the topic", False, e)

        # kcat: produce and consume.
        if shutil.which("kcat"):
            out = subprocess.run(["kcat", "-b", bootstrap, "-P", "-t", "kcat-topic", "-p", "0", "-z", "lz4"],
                                 input="one\ntwo\nthree\n", text=True, capture_output=True, timeout=30)
            check("kcat -P produces", out.returncode == 0, out.stderr)
            out = subprocess.run(["kcat", "-b", bootstrap, "-C", "-t", "kcat-topic", "-p", "0", "-o", "beginning", "-e",
                                  "-f", "%o:%s\n"], text=True, capture_output=True, timeout=30)
            check("kcat -C consumes what kcat produced", out.stdout.split() == ["0:one", "1:two", "2:three"],
                  out.stdout + out.stderr)
        else:
            print("skip kcat checks: kcat not installed")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    finish()


if __name__ == "__main__":
    main()
