#!/usr/bin/env python3
"""librdkafka (confluent-kafka) against the bundled broker binary: the admin APIs beyond topic
creation (DescribeCluster, DeleteTopics, CreatePartitions, DescribeConfigs, AlterConfigs,
IncrementalAlterConfigs) checked by an independent client.

Usage: python3 admin_apis_smoke.py PATH/TO/kafka-broker
Exits non-zero on any failed check; prints 'N passed, N failed' as its last line.
"""
import subprocess
import sys
import time

from interop_common import check, finish, start_broker
from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    ResourceType,
)


# librdkafka's name for UNKNOWN_TOPIC_OR_PARTITION.
UNKNOWN_TOPIC = "UNKNOWN_TOPIC_OR_PART"



def error_name(future):
    """The Kafka error name a future fails with, or None if it succeeds."""
    try:
        future.result(timeout=10)
        return None
    except KafkaException as e:
        return e.args[0].name()



def topic_config(admin, topic, name):
    res = ConfigResource(ResourceType.TOPIC, topic)
    configs = admin.describe_configs([res])[res].result(timeout=10)
    return configs[name]


def main():
    proc, bootstrap = start_broker(sys.argv[1], partitions=2)
    try:
        admin = AdminClient({"bootstrap.servers": bootstrap, "client.id": "interop-admin-apis"})

        cluster = admin.describe_cluster(request_timeout=10).result(timeout=10)
        check("describe_cluster lists the 3 brokers", sorted(n.id for n in cluster.nodes) == [1, 2, 3], cluster.nodes)
        check("describe_cluster cluster id", cluster.cluster_id == "kafka-sdk-bundled", cluster.cluster_id)
        check("describe_cluster controller", cluster.controller is not None and cluster.controller.id == 1)

        for name, f in admin.create_topics([NewTopic("grows", 2, 2), NewTopic("doomed", 1, 1)]).items():
            check(f"create {name}", error_name(f) is None)

        f = admin.create_partitions([NewPartitions("grows", 5)])["grows"]
        check("create_partitions grows to 5", error_name(f) is None)
        grows = admin.list_topics(timeout=10).topics["grows"]
        check("metadata shows 5 partitions", len(grows.partitions) == 5, len(grows.partitions))
        check("every new partition has a leader", all(p.leader in (1, 2, 3) for p in grows.partitions.values()))
        f = admin.create_partitions([NewPartitions("grows", 5)])["grows"]
        check("same count refused", error_name(f) == "INVALID_PARTITIONS")
        f = admin.create_partitions([NewPartitions("nope", 5)])["nope"]
        check("unknown topic refused", error_name(f) == UNKNOWN_TOPIC)
        f = admin.create_partitions([NewPartitions("grows", 6, replica_assignment=[[9, 1]])])["grows"]
        check("unknown broker in assignment refused", error_name(f) == "INVALID_REPLICA_ASSIGNMENT")

        entry = topic_config(admin, "grows", "retention.ms")
        check("describe_configs retention.ms default", entry.value == "604800000" and entry.is_default, entry)
        check("describe_configs source", entry.source == ConfigSource.DEFAULT_CONFIG.value, entry.source)

        res = ConfigResource(ResourceType.TOPIC, "grows", set_config={"retention.ms": "1000"})
        f = admin.alter_configs([res])[res]
        check("alter_configs sets retention.ms", error_name(f) is None)
        entry = topic_config(admin, "grows", "retention.ms")
        check("retention.ms now 1000 from the topic",
              entry.value == "1000" and entry.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value, entry)

        res = ConfigResource(ResourceType.TOPIC, "grows", incremental_configs=[
            ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND),
            ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE),
        ])
        f = admin.incremental_alter_configs([res])[res]
        check("incremental_alter_configs append + delete", error_name(f) is None)
        check("cleanup.policy appended",
              topic_config(admin, "grows", "cleanup.policy").value == "delete,compact")
        check("retention.ms back to the default", topic_config(admin, "grows", "retention.ms").value == "604800000")

        res = ConfigResource(ResourceType.TOPIC, "grows", incremental_configs=[
            ConfigEntry("retention.ms", "5", incremental_operation=AlterConfigOpType.APPEND),
        ])
        f = admin.incremental_alter_configs([res])[res]
        check("append to a non-list refused", error_name(f) == "INVALID_CONFIG")

        f = admin.delete_topics(["doomed"], operation_timeout=10)["doomed"]
        check("delete_topics doomed", error_name(f) is None)
        check("metadata no longer lists doomed", "doomed" not in admin.list_topics(timeout=10).topics)
        f = admin.delete_topics(["doomed"], operation_timeout=10)["doomed"]
        check("deleting again: unknown", error_name(f) == UNKNOWN_TOPIC)
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
