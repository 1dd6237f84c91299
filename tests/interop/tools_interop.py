"""Our command-line tools against the broker binary, cross-checked with librdkafka
(confluent-kafka): what `kafka-topics` creates, alters and deletes is what librdkafka's
AdminClient sees; records from `kafka-console-producer` reach a librdkafka consumer with their
keys, and librdkafka's records reach `kafka-console-consumer`; `kafka-consumer-groups`
describes a live librdkafka group (its client id, lag 0), refuses to reset it while it is
active, and resets it once it left (librdkafka's AdminClient sees the new offsets).

Usage: tools_interop.py BROKER_BINARY TOOLS_DIR
(TOOLS_DIR holds kafka-topics, kafka-console-producer, kafka-console-consumer and
kafka-consumer-groups.)
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "kafka-broker", "tests", "interop"))
from interop_common import check, finish, start_broker  # noqa: E402

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, ConfigResource  # noqa: E402


def tool(tools_dir, name, args, stdin=""):
    p = subprocess.run([os.path.join(tools_dir, name)] + args, input=stdin, capture_output=True, text=True,
                       timeout=120)
    return p.returncode, p.stdout, p.stderr


def consume_all(bootstrap, topic, count, group, extra=None):
    conf = {"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
            "enable.auto.commit": False}
    conf.update(extra or {})
    c = Consumer(conf)
    c.subscribe([topic])
    out = []
    deadline = time.time() + 60
    while len(out) < count and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            out.append(m)
    return c, out


def main():
    broker_binary, tools_dir = sys.argv[1], sys.argv[2]
    proc, bootstrap = start_broker(broker_binary, brokers=3)
    b = ["--bootstrap-server", bootstrap]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        rc, out, err = tool(tools_dir, "kafka-topics", b + ["--create", "--topic", "orders", "--partitions", "3",
                                                            "--replication-factor", "3", "--config",
                                                            "retention.ms=100000"])
        check("kafka-topics --create", rc == 0 and out == "Created topic orders.\n", f"{rc} {out!r} {err!r}")
        md = admin.list_topics(timeout=10)
        t = md.topics.get("orders")
        check("librdkafka sees 3 partitions with 3 replicas",
              t is not None and len(t.partitions) == 3 and all(len(p.replicas) == 3 for p in t.partitions.values()))
        res = ConfigResource(ConfigResource.Type.TOPIC, "orders")
        configs = admin.describe_configs([res])[res].result(timeout=10)
        check("librdkafka sees the topic config", configs["retention.ms"].value == "100000")
        rc, out, _ = tool(tools_dir, "kafka-topics", b + ["--describe", "--topic", "orders"])
        lines = out.splitlines()
        check("kafka-topics --describe: a header and 3 partition lines",
              rc == 0 and len(lines) == 4 and lines[0].startswith("Topic: orders\tTopicId: ")
              and "\tPartitionCount: 3\tReplicationFactor: 3\tConfigs: retention.ms=100000" in lines[0]
              and all(line.startswith("\tTopic: orders\tPartition: ") for line in lines[1:]), out)
        for line in lines[1:]:
            fields = dict(f.split(": ", 1) for f in line.strip().split("\t"))
            p = t.partitions[int(fields["Partition"])]
            check(f"partition {p.id}: leader, replicas and ISR as librdkafka sees them",
                  int(fields["Leader"]) == p.leader and fields["Replicas"] == ",".join(map(str, p.replicas))
                  and fields["Isr"] == ",".join(map(str, p.isrs)), line)

        lines_in = "".join(f"k{i % 5},ours-{i}\n" for i in range(30))
        rc, out, err = tool(tools_dir, "kafka-console-producer",
                            b + ["--topic", "orders", "--property", "parse.key=true", "--property", "key.separator=,",
                                 "--producer-property", "acks=all", "--compression-codec", "lz4"], lines_in)
        check("kafka-console-producer exits 0", rc == 0 and err == "", err)
        c, msgs = consume_all(bootstrap, "orders", 30, "rk-reader")
        c.close()
        got = sorted((m.key().decode(), m.value().decode()) for m in msgs)
        want = sorted((f"k{i % 5}", f"ours-{i}") for i in range(30))
        check("librdkafka reads the console producer's 30 records with their keys", got == want)
        by_key = {}
        for m in msgs:
            by_key.setdefault(m.key(), set()).add(m.partition())
        check("one partition per key", all(len(p) == 1 for p in by_key.values()))

        p = Producer({"bootstrap.servers": bootstrap})
        for i in range(20):
            p.produce("orders", key=f"rk{i}", value=f"theirs-{i}")
        p.flush(30)
        rc, out, err = tool(tools_dir, "kafka-console-consumer",
                            b + ["--topic", "orders", "--group", "cli-group", "--from-beginning", "--property",
                                 "print.key=true", "--property", "key.separator=,", "--max-messages", "50",
                                 "--timeout-ms", "20000"])
        printed = sorted(out.splitlines())
        want = sorted([f"k{i % 5},ours-{i}" for i in range(30)] + [f"rk{i},theirs-{i}" for i in range(20)])
        check("kafka-console-consumer prints all 50 records", rc == 0 and printed == want, f"{rc} {err!r}")
        check("kafka-console-consumer's summary", err.strip() == "Processed a total of 50 messages", err)
        offsets = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions("cli-group")])
        committed = offsets["cli-group"].result(timeout=10).topic_partitions
        check("the console consumer's group committed every printed record",
              sum(tp.offset for tp in committed) == 50, committed)

        # A live librdkafka group, described by our tool.
        c, msgs = consume_all(bootstrap, "orders", 50, "rk-group", {"client.id": "rk-client"})
        c.commit(asynchronous=False)
        rc, out, err = tool(tools_dir, "kafka-consumer-groups", b + ["--describe", "--group", "rk-group"])
        rows = [line.split() for line in out.splitlines() if line.strip()]
        check("kafka-consumer-groups --describe: Kafka's columns",
              rows and rows[0] == ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG",
                                   "CONSUMER-ID", "HOST", "CLIENT-ID"], out)
        check("... one row per partition, lag 0, librdkafka's client id",
              len(rows) == 4 and all(r[5] == "0" and r[8] == "rk-client" for r in rows[1:]), out)
        rc, out, err = tool(tools_dir, "kafka-consumer-groups",
                            b + ["--reset-offsets", "--group", "rk-group", "--topic", "orders", "--to-earliest",
                                 "--execute"])
        check("reset refused while the group is active", rc == 1 and "Stable" in err, err)
        c.close()
        rc, out, err = tool(tools_dir, "kafka-consumer-groups",
                            b + ["--reset-offsets", "--group", "rk-group", "--topic", "orders", "--to-earliest",
                                 "--execute"])
        check("reset executed once the group is empty", rc == 0, err)
        offsets = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions("rk-group")])
        committed = offsets["rk-group"].result(timeout=10).topic_partitions
        check("librdkafka sees the reset offsets", len(committed) == 3 and all(tp.offset == 0 for tp in committed),
              committed)
        rc, out, err = tool(tools_dir, "kafka-consumer-groups", b + ["--list"])
        check("kafka-consumer-groups --list", rc == 0 and set(out.split()) == {"rk-reader", "cli-group", "rk-group"},
              out)
        rc, out, err = tool(tools_dir, "kafka-consumer-groups", b + ["--delete", "--group", "rk-group"])
        check("kafka-consumer-groups --delete", rc == 0 and "was successful" in out, out + err)

        rc, out, err = tool(tools_dir, "kafka-topics", b + ["--alter", "--topic", "orders", "--partitions", "6"])
        check("kafka-topics --alter", rc == 0, err)
        check("librdkafka sees 6 partitions", len(admin.list_topics(timeout=10).topics["orders"].partitions) == 6)
        rc, out, err = tool(tools_dir, "kafka-topics", b + ["--delete", "--topic", "orders"])
        check("kafka-topics --delete", rc == 0, err)
        deadline = time.time() + 10
        while "orders" in admin.list_topics(timeout=10).topics and time.time() < deadline:
            time.sleep(0.2)
        check("librdkafka no longer sees the topic", "orders" not in admin.list_topics(timeout=10).topics)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    finish()


if __name__ == "__main__":
    main()
