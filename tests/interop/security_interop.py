#!/usr/bin/env python3
"""librdkafka (confluent-kafka) against the broker binary's security: an independent check of
the broker side of TLS and SASL.

1. SASL_SSL with SCRAM-SHA-512: the broker generates a test CA (--tls-generate-ca) that
   librdkafka trusts through ssl.ca.location (hostname verification on); produce and consume
   back; sessions of 2 s (connections.max.reauth.ms) are re-authenticated by librdkafka
   (KIP-368) while it keeps producing, and the broker logs no expired session.
2. SASL_PLAINTEXT with PLAIN: produce and consume back.
3. A wrong password: librdkafka reports an authentication error and delivers nothing.

Usage: security_interop.py BROKER_BINARY
Prints 'N passed, N failed' as its last line; exits non-zero on any failed check.
"""
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "kafka-broker", "tests", "interop"))
from interop_common import check, finish  # noqa: E402

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition  # noqa: E402

REAUTH_MS = 2000


def start(binary, args, log_path):
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [binary, "--listen", "127.0.0.1:0", "--brokers", "1", "--partitions", "2", "--log-level", "info"] + args,
        stdout=subprocess.PIPE, stderr=log, text=True)
    deadline = time.time() + 30
    while time.time() < deadline:
        line = proc.stdout.readline()
        if line.startswith("bootstrap.servers="):
            return proc, line.strip().split("=", 1)[1]
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit(f"broker did not start: {open(log_path).read()}")


def produce(conf, topic, count, spread_s=0.0):
    errors, delivered = [], []

    def on_delivery(err, msg):
        (errors if err else delivered).append(err or msg.offset())

    p = Producer(dict(conf, **{"linger.ms": 5, "acks": "all", "error_cb": lambda e: errors.append(e)}))
    for i in range(count):
        p.produce(topic, key=str(i).encode(), value=f"value-{i}".encode(), on_delivery=on_delivery)
        p.poll(0)
        if spread_s:
            time.sleep(spread_s / count)
    left = p.flush(20)
    return left, errors, delivered


def consume(conf, topic, partitions, want):
    c = Consumer(dict(conf, **{"group.id": "security-interop", "enable.auto.commit": False}))
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got, deadline = [], time.time() + 20
    while len(got) < want and time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            print(f"     consumer error: {m.error()}")
            continue
        got.append(m.value())
    c.close()
    return got


def main():
    binary = sys.argv[1]
    tmp = tempfile.mkdtemp(prefix="security-interop-")
    ca = os.path.join(tmp, "ca.pem")

    # 1. SASL_SSL + SCRAM-SHA-512, with re-authentication.
    log1 = os.path.join(tmp, "sasl_ssl.log")
    proc, bootstrap = start(binary, [
        "--security-protocol", "SASL_SSL",
        "--sasl-user", "alice:alice:secret:SCRAM-SHA-512",  # the password contains ':'
        "--tls-generate-ca", ca,
        "--config", f"connections.max.reauth.ms={REAUTH_MS}",
    ], log1)
    try:
        check("the CA certificate was written", os.path.exists(ca) and "BEGIN CERTIFICATE" in open(ca).read())
        conf = {"bootstrap.servers": bootstrap, "security.protocol": "SASL_SSL", "sasl.mechanisms": "SCRAM-SHA-512",
                "sasl.username": "alice", "sasl.password": "alice:secret", "ssl.ca.location": ca,
                "ssl.endpoint.identification.algorithm": "https"}
        left, errors, delivered = produce(conf, "scram", 300, spread_s=2.5 * REAUTH_MS / 1000)
        check("SASL_SSL SCRAM-SHA-512: librdkafka produced 300 records across several session lifetimes",
              left == 0 and not errors and len(delivered) == 300, f"left={left} errors={errors[:3]}")
        got = consume(conf, "scram", 2, 300)
        check("SASL_SSL SCRAM-SHA-512: librdkafka consumed them back",
              sorted(got) == sorted(f"value-{i}".encode() for i in range(300)), f"got {len(got)}")
        proc.terminate()
        proc.wait(10)
        log = open(log1).read()
        expired = log.count("SASL session expired")
        reauths = log.count("SASL re-authentication done")
        check("librdkafka re-authenticated (KIP-368) before its sessions expired",
              reauths >= 1 and expired == 0, f"{reauths} re-authentications, {expired} expired sessions")
        print(f"     {reauths} re-authentications, {expired} expired sessions")
        check("the broker saw no failed authentication", "SASL authentication failed" not in log)
        check("no password in the broker's log at info", "alice:secret" not in log)

    finally:
        if proc.poll() is None:
            proc.kill()

    # 2. SASL_PLAINTEXT + PLAIN, and 3. a wrong password.
    proc, bootstrap = start(binary, [
        "--security-protocol", "SASL_PLAINTEXT",
        "--sasl-user", "carol:carol-secret:PLAIN",
        "--sasl-user", "dave:dave-secret:SCRAM-SHA-256",
    ], os.path.join(tmp, "sasl_plaintext.log"))
    try:
        conf = {"bootstrap.servers": bootstrap, "security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "PLAIN",
                "sasl.username": "carol", "sasl.password": "carol-secret"}
        left, errors, delivered = produce(conf, "plain", 200)
        check("SASL_PLAINTEXT PLAIN: librdkafka produced 200 records", left == 0 and not errors and len(delivered) == 200,
              f"left={left} errors={errors[:3]}")
        got = consume(conf, "plain", 2, 200)
        check("SASL_PLAINTEXT PLAIN: librdkafka consumed them back", len(got) == 200, f"got {len(got)}")

        conf256 = dict(conf, **{"sasl.mechanisms": "SCRAM-SHA-256", "sasl.username": "dave",
                                "sasl.password": "dave-secret"})
        left, errors, delivered = produce(conf256, "scram256", 50)
        check("SASL_PLAINTEXT SCRAM-SHA-256: librdkafka produced 50 records", left == 0 and not errors,
              f"left={left} errors={errors[:3]}")

        bad = dict(conf, **{"sasl.password": "wrong"})
        errors = []
        p = Producer(dict(bad, **{"error_cb": lambda e: errors.append(e), "message.timeout.ms": 3000,
                                  "log_level": 0}))
        p.produce("plain", value=b"never")
        p.flush(5)
        del p
        auth = [e for e in errors if e.code() == KafkaError._AUTHENTICATION]
        check("a wrong password: librdkafka reports an authentication error", bool(auth),
              f"errors={[str(e) for e in errors[:3]]}")
        if auth:
            print(f"     librdkafka says: {auth[0].str()}")
    finally:
        proc.kill()
    finish()


if __name__ == "__main__":
    main()
