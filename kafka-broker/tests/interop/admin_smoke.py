#!/usr/bin/env python3
"""librdkafka (confluent-kafka) against the bundled broker binary: what the broker implements
today (ApiVersions, Metadata, CreateTopics) checked by an independent client.

Usage: python3 admin_smoke.py PATH/TO/kafka-broker
Exits non-zero on any failed check; prints 'N passed, N failed' as its last line.
"""
import json
import shutil
import subprocess
import sys
import time

from interop_common import check, finish, start_broker
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic





def main():
    proc, bootstrap = start_broker(sys.argv[1], partitions=4)
    try:
        admin = AdminClient({"bootstrap.servers": bootstrap, "client.id": "interop-admin"})
        md = admin.list_topics(timeout=10)
        check("metadata lists the 3 brokers", sorted(md.brokers) == [1, 2, 3], md.brokers)
        check("metadata names a controller", md.controller_id in (1, 2, 3), md.controller_id)
        check("cluster id", md.cluster_id == "kafka-sdk-bundled", md.cluster_id)

        futures = admin.create_topics([NewTopic("orders", 6, 3), NewTopic("small", 1, 1)], operation_timeout=10)
        for name, f in futures.items():
            try:
                f.result(timeout=10)
                check(f"create_topics {name}", True)
            except KafkaException as e:
                check(f"create_topics {name}", False, e)

        md = admin.list_topics(timeout=10)
        orders = md.topics.get("orders")
        check("orders has 6 partitions", orders is not None and len(orders.partitions) == 6)
        if orders is not None:
            leaders = sorted(p.leader for p in orders.partitions.values())
            check("leaders spread over brokers", leaders == [1, 1, 2, 2, 3, 3], leaders)
            check("replicas = 3, isr = replicas", all(len(p.replicas) == 3 and p.isrs == p.replicas for p in orders.partitions.values()))

        bad = admin.create_topics([NewTopic("too-replicated", 1, 4)], operation_timeout=10)["too-replicated"]
        try:
            bad.result(timeout=10)
            check("replication factor 4 on 3 brokers refused", False, "it was accepted")
        except KafkaException as e:
            check("replication factor 4 on 3 brokers refused", e.args[0].name() == "INVALID_REPLICATION_FACTOR", e)

        dup = admin.create_topics([NewTopic("orders", 1, 1)], operation_timeout=10)["orders"]
        try:
            dup.result(timeout=10)
            check("existing topic refused", False, "it was accepted")
        except KafkaException as e:
            check("existing topic refused", e.args[0].name() == "TOPIC_ALREADY_EXISTS", e)

        kcat = shutil.which("kcat")
        if kcat:
            out = subprocess.run([kcat, "-b", bootstrap, "-L", "-J"], capture_output=True, text=True, timeout=30)
            listing = json.loads(out.stdout) if out.returncode == 0 else {}
            brokers = sorted(b["id"] for b in listing.get("brokers", []))
            topics = {t["topic"]: len(t["partitions"]) for t in listing.get("topics", [])}
            check("kcat -L lists the brokers", brokers == [1, 2, 3], out.stderr[-300:])
            check("kcat -L lists the topics", topics.get("orders") == 6 and topics.get("small") == 1, topics)
        else:
            print("skip kcat checks (kcat not installed)")

        dry = admin.create_topics([NewTopic("dry-run", 2, 1)], validate_only=True, operation_timeout=10)["dry-run"]
        dry.result(timeout=10)
        check("validate_only creates nothing", "dry-run" not in admin.list_topics(timeout=10).topics)
    finally:
        proc.terminate()
        try:
            check("broker exits cleanly on SIGTERM", proc.wait(timeout=10) == 0)
        except subprocess.TimeoutExpired:
            proc.kill()
            check("broker exits cleanly on SIGTERM", False, "timed out")
    finish()


if __name__ == "__main__":
    main()
