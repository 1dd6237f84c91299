"""librdkafka's view of the broker behaviour that `kafka-compat-check` checks, so that a FAIL
from our tool can be told apart from a bug of ours: if librdkafka (confluent-kafka) sees the
same thing against the same broker, the broker deviates from Kafka.

Each line is one behaviour, with what Kafka does and what this broker did:
- the high watermark after ten records sent as one batch (Kafka: 10);
- the offset for a timestamp inside that batch (Kafka: the first record at or after it, 4);
- the offset of the max timestamp (ListOffsets v7+; Kafka: 9);
- DeleteRecords before offset 4 (Kafka: low watermark 4);
- a topic config given at creation (Kafka: source DYNAMIC_TOPIC_CONFIG) and after an
  incremental DELETE (Kafka: listed with a default source);
- the members DescribeGroups lists for a stable group of two (Kafka: both).

Usage:
    compat_crosscheck.py --bootstrap HOST:PORT   print what the broker does (exit 0)
    compat_crosscheck.py BROKER_BINARY           start the bundled broker binary and require
                                                 Kafka's behaviour for every line (CI)
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "kafka-broker", "tests", "interop"))
from interop_common import check, finish, start_broker  # noqa: E402

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import (  # noqa: E402
    AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource, NewTopic, OffsetSpec)


def observe(bootstrap):
    """Returns [(behaviour, what Kafka does, what the broker did)]."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    stamp = int(time.time() * 1000)
    out = []

    def attempt(what, kafka, fn):
        try:
            out.append((what, kafka, fn()))
        except KafkaException as e:
            out.append((what, kafka, f"error: {e.args[0].str()}"))

    topic = f"crosscheck-offsets-{stamp}"
    admin.create_topics([NewTopic(topic, 1, 1, config={"message.timestamp.type": "CreateTime"})])[topic].result(30)
    base = stamp - 600_000
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50})
    for i in range(10):
        producer.produce(topic, value=b"r%d" % i, partition=0, timestamp=base + 1000 * i)
    producer.flush(30)
    tp = TopicPartition(topic, 0)

    def listed(spec):
        return admin.list_offsets({tp: spec}, request_timeout=15)[tp].result(30).offset

    attempt("high watermark after 10 records in one batch", 10, lambda: listed(OffsetSpec.latest()))
    attempt("offset for a timestamp inside the batch (record 3.5 s in)", 4,
            lambda: listed(OffsetSpec.for_timestamp(base + 3500)))
    attempt("offset of the max timestamp", 9, lambda: listed(OffsetSpec.max_timestamp()))
    attempt("low watermark after DeleteRecords before offset 4", 4,
            lambda: admin.delete_records([TopicPartition(topic, 0, 4)], request_timeout=15)[
                TopicPartition(topic, 0, 4)].result(30).low_watermark)

    ctopic = f"crosscheck-configs-{stamp}"
    admin.create_topics([NewTopic(ctopic, 1, 1, config={"retention.ms": "3600000"})])[ctopic].result(30)
    resource = ConfigResource(ConfigResource.Type.TOPIC, ctopic)

    def retention():
        entry = admin.describe_configs([resource])[resource].result(30).get("retention.ms")
        return None if entry is None else (entry.value, ConfigSource(entry.source).name)

    attempt("retention.ms given at creation", ("3600000", "DYNAMIC_TOPIC_CONFIG"), retention)
    delete = ConfigResource(ConfigResource.Type.TOPIC, ctopic, incremental_configs=[
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE)])
    admin.incremental_alter_configs([delete])[delete].result(30)
    # KRaft brokers apply a change after the controller commits it: poll until it shows.
    deadline = time.time() + 10
    while time.time() < deadline and (retention() or ("",))[0] == "3600000":
        time.sleep(0.2)
    attempt("retention.ms after an incremental DELETE", "listed, with a default source", retention)

    gtopic = f"crosscheck-group-{stamp}"
    admin.create_topics([NewTopic(gtopic, 4, 1)])[gtopic].result(30)
    group = f"crosscheck-group-{stamp}"
    members = [Consumer({"bootstrap.servers": bootstrap, "group.id": group, "client.id": f"m{i}",
                         "auto.offset.reset": "earliest"}) for i in range(2)]
    for m in members:
        m.subscribe([gtopic])
    deadline = time.time() + 60
    while time.time() < deadline and not all(m.assignment() for m in members):
        for m in members:
            m.poll(0.2)
    attempt("members DescribeGroups lists for a stable group of two", ["m0", "m1"],
            lambda: sorted(d.client_id for d in admin.describe_consumer_groups([group])[group].result(30).members))
    for m in members:
        m.close()
    return out


def matches_kafka(kafka, seen):
    if kafka == "listed, with a default source":
        return isinstance(seen, tuple) and seen[1] in ("DEFAULT_CONFIG", "STATIC_BROKER_CONFIG")
    return seen == kafka


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--bootstrap":
        for what, kafka, seen in observe(sys.argv[2]):
            mark = "same as Kafka" if matches_kafka(kafka, seen) else "DIFFERS"
            print(f"{mark:13}  {what}: Kafka {kafka!r}, this broker {seen!r}")
        return
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    proc, bootstrap = start_broker(sys.argv[1], brokers=1, partitions=1)
    try:
        for what, kafka, seen in observe(bootstrap):
            check(f"{what}: {seen!r}", matches_kafka(kafka, seen), f"(Kafka: {kafka!r})")
    finally:
        proc.kill()
    finish()


if __name__ == "__main__":
    main()
