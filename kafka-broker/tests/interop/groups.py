#!/usr/bin/env python3
"""librdkafka (confluent-kafka) consumer groups against the bundled broker binary: for the
range and then the cooperative-sticky assignor, 3 consumers share a 6-partition topic, a
fourth joins and two leave; each partition is owned by one member at a time, every record
is consumed once (again only if its commit failed), the committed offsets are what the
members committed, and after everyone left a new member resumes from them. Two static
members (group.instance.id): one restarts and gets its partitions back without the other
seeing a rebalance. Partitions added to a subscribed topic are assigned after the leader
rejoins. Then the AdminClient lists, describes and deletes the groups.

Usage: python3 groups.py PATH/TO/kafka-broker
Exits non-zero on any failed check; prints 'N passed, N failed' as its last line.
"""
import sys
import time

from interop_common import check, finish, start_broker
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic

PARTITIONS = 6
PER_PARTITION = 60
TIMEOUT = 60


class Member:
    """One consumer, with what it owns and what it consumed and committed."""

    def __init__(self, name, world, bootstrap, group, topic, strategy, extra=None):
        self.name = name
        self.world = world
        self.revocations = 0
        self.owned = set()
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "client.id": name,
            "partition.assignment.strategy": strategy,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 300,
            **(extra or {}),
        })
        self.consumer.subscribe([topic], on_assign=self.on_assign, on_revoke=self.on_revoke, on_lost=self.on_revoke)

    def on_assign(self, consumer, partitions):
        for tp in partitions:
            owner = self.world.owner.get(tp.partition)
            if owner is not None and owner != self.name:
                self.world.violations.append(f"{self.name} assigned {tp.partition} still owned by {owner}")
            self.world.owner[tp.partition] = self.name
            self.owned.add(tp.partition)

    def on_revoke(self, consumer, partitions):
        if partitions:
            self.revocations += 1
        for tp in partitions:
            if self.world.owner.get(tp.partition) == self.name:
                del self.world.owner[tp.partition]
            self.owned.discard(tp.partition)

    def poll(self, limit):
        """Polls once; consumes (and commits) at most one record if `limit()` allows."""
        msg = self.consumer.poll(0.05)
        if msg is None:
            return
        if msg.error():
            print(f"     {self.name}: {msg.error()}")
            return
        p, o = msg.partition(), msg.offset()
        if self.world.owner.get(p) != self.name:
            self.world.violations.append(f"{self.name} got {p}@{o} owned by {self.world.owner.get(p)}")
        self.world.consumed.setdefault((p, o), []).append(self.name)
        try:
            self.consumer.commit(message=msg, asynchronous=False)
            self.world.committed[p] = max(self.world.committed.get(p, 0), o + 1)
        except KafkaException as e:
            # Refused during a rebalance: the next owner reads it again.
            self.world.failed_commits.add((p, o))
            print(f"     {self.name}: commit of {p}@{o} refused: {e.args[0].name()}")
        if not limit():
            # Stop fetching more than asked for: pause until the phase ends.
            self.consumer.pause(self.consumer.assignment())

    def resume(self):
        self.consumer.resume(self.consumer.assignment())

    def close(self):
        self.consumer.close()


class World:
    """What every member's callbacks and records are checked against."""

    def __init__(self):
        self.owner = {}
        self.consumed = {}
        self.committed = {}
        self.failed_commits = set()
        self.violations = []


def run_until(members, cond, limit=lambda: True, timeout=TIMEOUT):
    deadline = time.time() + timeout
    while time.time() < deadline:
        for m in members:
            m.poll(limit)
        if cond():
            return True
    return False


def balanced(members):
    """Every partition has an owner and every member owns some."""
    def cond():
        owned = [p for m in members for p in m.owned]
        return sorted(owned) == list(range(PARTITIONS)) and all(m.owned for m in members)
    return cond


def produce(bootstrap, topic, per_partition, start=0):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for part in range(PARTITIONS):
        for i in range(per_partition):
            p.produce(topic, value=f"{part}-{start + i}".encode(), partition=part)
    check(f"{topic}: produced {per_partition} records per partition", p.flush(30) == 0)


def group_flow(bootstrap, admin, strategy):
    topic, group = f"orders-{strategy}", f"group-{strategy}"
    for f in admin.create_topics([NewTopic(topic, PARTITIONS, 3)], operation_timeout=10).values():
        f.result(timeout=10)
    produce(bootstrap, topic, PER_PARTITION)
    world = World()
    mk = lambda name: Member(name, world, bootstrap, group, topic, strategy)
    members = [mk(f"{strategy}-c{i}") for i in range(1, 4)]

    ok = run_until(members, balanced(members))
    check(f"{strategy}: 3 members share the 6 partitions", ok, {m.name: sorted(m.owned) for m in members})
    if strategy == "range":
        check(f"{strategy}: two partitions each", sorted(len(m.owned) for m in members) == [2, 2, 2])

    # Consume a third, with a fourth member joining.
    third = PARTITIONS * PER_PARTITION // 3
    run_until(members, lambda: len(world.consumed) >= third // 2, lambda: len(world.consumed) < third // 2)
    before = {m.name: m.revocations for m in members}
    for m in members:
        m.resume()
    c4 = mk(f"{strategy}-c4")
    members.append(c4)
    ok = run_until(members, balanced(members))
    check(f"{strategy}: a joining member gets partitions", ok and bool(c4.owned), {m.name: sorted(m.owned) for m in members})
    check(f"{strategy}: the join made members give up partitions",
          any(m.revocations > before[m.name] for m in members[:3]),
          (before, {m.name: m.revocations for m in members}))
    run_until(members, lambda: len(world.consumed) >= third, lambda: len(world.consumed) < third)
    for m in members:
        m.resume()

    # Two leave: the remaining two take everything over.
    leaving = [members[0], c4]
    for m in leaving:
        m.close()
        world.owner = {p: o for p, o in world.owner.items() if o != m.name}
    members = [m for m in members if m not in leaving]
    ok = run_until(members, balanced(members))
    check(f"{strategy}: after two leave, the other two own every partition", ok,
          {m.name: sorted(m.owned) for m in members})
    two_thirds = 2 * third
    run_until(members, lambda: len(world.consumed) >= two_thirds, lambda: len(world.consumed) < two_thirds)

    # Everyone leaves, part way through the topic.
    for m in members:
        m.close()
    check(f"{strategy}: each partition had one owner at a time", not world.violations, world.violations[:5])
    dupes = [k for k, who in world.consumed.items() if len(who) > 1 and k not in world.failed_commits]
    check(f"{strategy}: no record consumed twice unless its commit failed", not dupes, dupes[:5])

    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    committed = probe.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
    probe.close()
    got = {tp.partition: tp.offset for tp in committed if tp.offset >= 0}
    check(f"{strategy}: committed offsets are what the members committed", got == world.committed,
          (got, world.committed))

    # A new member resumes from the committed offsets and reads the rest exactly once.
    resumed = {}
    c5 = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "client.id": f"{strategy}-c5",
                   "partition.assignment.strategy": strategy, "enable.auto.commit": False,
                   "auto.offset.reset": "earliest", "heartbeat.interval.ms": 300})
    c5.subscribe([topic])
    total = PARTITIONS * PER_PARTITION
    deadline = time.time() + TIMEOUT
    rest = []
    while len(set(world.consumed) | set(rest)) < total and time.time() < deadline:
        msg = c5.poll(0.2)
        if msg is None or msg.error():
            continue
        resumed.setdefault(msg.partition(), msg.offset())
        rest.append((msg.partition(), msg.offset()))
    c5.commit(asynchronous=False)
    firsts = {p: o for p, o in resumed.items()}
    want_firsts = {p: world.committed.get(p, 0) for p in range(PARTITIONS) if world.committed.get(p, 0) < PER_PARTITION}
    check(f"{strategy}: the new member starts where the group committed", firsts == want_firsts,
          (firsts, want_firsts))
    everything = set(world.consumed) | set(rest)
    check(f"{strategy}: every record was consumed", len(everything) == total
          and not (set(rest) & (set(world.consumed) - world.failed_commits)), (len(everything), len(rest)))

    # The AdminClient sees the live group, refuses to delete it, then deletes it empty.
    desc = admin.describe_consumer_groups([group])[group].result(timeout=10)
    state = str(desc.state)
    check(f"{strategy}: describe shows one stable member", state.endswith("STABLE") and len(desc.members) == 1,
          (state, desc.members))
    if desc.members:
        m = desc.members[0]
        parts = sorted(tp.partition for tp in m.assignment.topic_partitions)
        check(f"{strategy}: describe shows the member's client id, host and assignment",
              m.client_id == f"{strategy}-c5" and m.host.startswith("/127.0.0.1") and parts == list(range(PARTITIONS)),
              (m.client_id, m.host, parts))
    check(f"{strategy}: describe names the assignor", desc.partition_assignor == strategy, desc.partition_assignor)
    try:
        admin.delete_consumer_groups([group])[group].result(timeout=10)
        check(f"{strategy}: a group with members is not deleted", False)
    except KafkaException as e:
        check(f"{strategy}: a group with members is not deleted", e.args[0].name() == "NON_EMPTY_GROUP", e)
    c5.close()
    return group


def static_membership(bootstrap, admin):
    """Static members (group.instance.id): one restarts within its session and gets its
    partitions back; the other keeps its own and sees no rebalance."""
    topic, group = "static-topic", "static-group"
    for f in admin.create_topics([NewTopic(topic, PARTITIONS, 3)], operation_timeout=10).values():
        f.result(timeout=10)
    world = World()

    def mk(instance):
        extra = {"group.instance.id": instance, "session.timeout.ms": 30000}
        return Member(instance, world, bootstrap, group, topic, "range", extra)

    s1 = mk("static-1")
    ok = run_until([s1], balanced([s1]))
    s2 = mk("static-2")
    ok = ok and run_until([s1, s2], balanced([s1, s2]))
    check("static: two members share the partitions", ok, (sorted(s1.owned), sorted(s2.owned)))
    owned_by_2 = sorted(s2.owned)
    revoked_before = s1.revocations
    # A static member leaves no LeaveGroup behind when it closes: its place is kept.
    s2.close()
    world.owner = {p: o for p, o in world.owner.items() if o != "static-2"}
    restarted = mk("static-2")
    ok = run_until([s1, restarted], lambda: sorted(restarted.owned) == owned_by_2, timeout=20)
    check("static: the restarted member gets its partitions back", ok, (sorted(restarted.owned), owned_by_2))
    # Give the other member time to see a rebalance, had there been one.
    run_until([s1, restarted], lambda: False, timeout=2)
    check("static: the other member was not rebalanced", s1.revocations == revoked_before,
          (revoked_before, s1.revocations))
    desc = admin.describe_consumer_groups([group])[group].result(timeout=10)
    instances = sorted(m.group_instance_id or "" for m in desc.members)
    check("static: describe shows both instance ids", instances == ["static-1", "static-2"], instances)
    for m in (s1, restarted):
        m.close()
    return group


def partitions_added(bootstrap, admin):
    """Partitions added to a subscribed topic show in Metadata; the group's leader notices
    and rejoins, and the new partitions get owners."""
    topic, group = "growing", "growing-group"
    for f in admin.create_topics([NewTopic(topic, 2, 3)], operation_timeout=10).values():
        f.result(timeout=10)
    world = World()
    extra = {"topic.metadata.refresh.interval.ms": 500}
    members = [Member(f"grow-{i}", world, bootstrap, group, topic, "range", extra) for i in (1, 2)]
    covers = lambda n: lambda: sorted(p for m in members for p in m.owned) == list(range(n))
    check("growing: two members own the two partitions", run_until(members, covers(2)))
    for f in admin.create_partitions([NewPartitions(topic, 4)], operation_timeout=10).values():
        f.result(timeout=10)
    check("growing: after CreatePartitions the group owns all four", run_until(members, covers(4)),
          {m.name: sorted(m.owned) for m in members})
    check("growing: one owner at a time", not world.violations, world.violations[:5])
    for m in members:
        m.close()


def admin_checks(admin, groups):
    listed = admin.list_consumer_groups(request_timeout=10).result()
    states = {g.group_id: str(g.state) for g in listed.valid}
    check("list_consumer_groups lists both groups as empty",
          all(states.get(g, "").endswith("EMPTY") for g in groups), (states, listed.errors))
    for g in groups:
        desc = admin.describe_consumer_groups([g])[g].result(timeout=10)
        check(f"describe {g}: empty, no members", str(desc.state).endswith("EMPTY") and not desc.members,
              (desc.state, desc.members))
    for g, f in admin.delete_consumer_groups(groups, request_timeout=10).items():
        try:
            f.result(timeout=10)
            check(f"delete_consumer_groups deletes empty {g}", True)
        except KafkaException as e:
            check(f"delete_consumer_groups deletes empty {g}", False, e)
    listed = admin.list_consumer_groups(request_timeout=10).result()
    left = [g.group_id for g in listed.valid if g.group_id in groups]
    check("deleted groups are no longer listed", not left, left)
    try:
        admin.delete_consumer_groups([groups[0]])[groups[0]].result(timeout=10)
        check("deleting it again: GROUP_ID_NOT_FOUND", False)
    except KafkaException as e:
        check("deleting it again: GROUP_ID_NOT_FOUND", e.args[0].name() == "GROUP_ID_NOT_FOUND", e)


def main():
    proc, bootstrap = start_broker(sys.argv[1], brokers=3, partitions=3)
    try:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        groups = [group_flow(bootstrap, admin, s) for s in ["range", "cooperative-sticky"]]
        static_membership(bootstrap, admin)
        partitions_added(bootstrap, admin)
        admin_checks(admin, groups)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    finish()


if __name__ == "__main__":
    main()
