#!/usr/bin/env bash
# Producer and consumer comparison: kafka-sdk (examples/src/bin/kafka-perf.rs) against
# librdkafka (perf/rdkafka-perf), same bundled broker binary, alternating A B A B, median of
# per-pair ratios (docs: /work/shared/docs/PERFORMANCE.md, perf/README.md).
#
# usage: perf/compare.sh [WORKLOAD ...]      workloads: P100 P1K PZ-lz4 PZ-zstd C100 TXN (default: all)
# env:   PAIRS=3            A B pairs per workload (at least 3 for a reportable figure)
#        RECORDS_SCALE=1    multiplies every record count (e.g. 0.1 for a quick run)
#        SKIP_BUILD=1       use the binaries already built
#        COOLDOWN=1         seconds of pause between runs
#        LOG_DIR=DIR        where each run's output goes (default: a new temporary directory)
#        CARGO_TARGET_DIR   where cargo builds the workspace (default: target/ at the root)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

PAIRS=${PAIRS:-3}
RECORDS_SCALE=${RECORDS_SCALE:-1}
SKIP_BUILD=${SKIP_BUILD:-0}
COOLDOWN=${COOLDOWN:-1}
LOG_DIR=${LOG_DIR:-$(mktemp -d /tmp/perf-compare.XXXXXX)}
mkdir -p "$LOG_DIR"

# The workspace's binaries are where cargo puts them: CARGO_TARGET_DIR if set (relative to the
# root, where cargo runs), else target/. rdkafka-perf always builds in its own target/.
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
[[ "$TARGET_DIR" = /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR"
OURS="$TARGET_DIR/release/kafka-perf"
THEIRS="$ROOT/perf/rdkafka-perf/target/release/rdkafka-perf"
BROKER="$TARGET_DIR/release/kafka-broker"

ALL_WORKLOADS=(P100 P1K PZ-lz4 PZ-zstd C100 TXN)

# The prefill of the consumer workloads: P100's producer settings, with kafka-perf.
PREFILL_FLAGS="--acks all --idempotence true --batch-size 1048576 --linger-ms 5 --compression none"

# workload -> "records size partitions description|flags"; consumer workloads' flags start
# with "consume" (the rest goes to the consumers).
workload_spec() {
    local common="--acks all --idempotence true --batch-size 1048576"
    case "$1" in
        P100) echo "2000000 100 6 acks=all, idempotent, linger 5 ms, batch 1 MiB, no compression|$common --linger-ms 5 --compression none" ;;
        P1K) echo "500000 1024 16 acks=all, idempotent, linger 1 ms, batch 1 MiB, no compression|$common --linger-ms 1 --compression none" ;;
        PZ-lz4) echo "2000000 100 6 P100 with lz4 (default level)|$common --linger-ms 5 --compression lz4" ;;
        PZ-zstd) echo "2000000 100 6 P100 with zstd level 3|$common --linger-ms 5 --compression zstd --producer-property compression.level=3" ;;
        TXN) echo "200000 100 6 2,000 transactions of 100 records, each committed (transactions/s = records/s / 100)|$common --linger-ms 5 --compression none --transactional-id perf-txn --transaction-records 100 --producer-property delivery.timeout.ms=60000" ;;
        C100) echo "2000000 100 6 prefilled by kafka-perf (P100 settings), group consumer from earliest, check.crcs=true|consume" ;;
        *) return 1 ;;
    esac
}

if [[ $# -gt 0 ]]; then WORKLOADS=("$@"); else WORKLOADS=("${ALL_WORKLOADS[@]}"); fi
for w in "${WORKLOADS[@]}"; do
    workload_spec "$w" >/dev/null || { echo "unknown workload $w (known: ${ALL_WORKLOADS[*]})" >&2; exit 2; }
done
[[ "$PAIRS" =~ ^[1-9][0-9]*$ ]] || { echo "PAIRS must be a positive integer" >&2; exit 2; }

if [[ "$SKIP_BUILD" != 1 ]]; then
    # One build at a time (the C build of librdkafka alone takes minutes on 2 cores).
    echo "building kafka-broker and kafka-perf (release)..." >&2
    cargo build --release -p kafka-broker -p kafka-examples --bin kafka-broker --bin kafka-perf >&2
    echo "building rdkafka-perf (release; compiles librdkafka the first time)..." >&2
    (cd perf/rdkafka-perf && cargo build --release) >&2
fi
for b in "$OURS" "$THEIRS" "$BROKER"; do
    [[ -x "$b" ]] || { echo "missing $b" >&2; exit 1; }
done

BROKER_PID=""
stop_broker() {
    if [[ -n "$BROKER_PID" ]]; then
        kill "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
        BROKER_PID=""
    fi
}
trap stop_broker EXIT

# Starts a fresh broker on a free port (port 0) and sets BOOTSTRAP. The bundled broker keeps
# everything in memory, so each workload gets its own (a full run writes several GB).
start_broker() {
    local out="$LOG_DIR/broker-$1.out"
    "$BROKER" --listen 127.0.0.1:0 --brokers 1 --log-level warn >"$out" 2>&1 &
    BROKER_PID=$!
    BOOTSTRAP=""
    for _ in $(seq 1 100); do
        BOOTSTRAP=$(sed -n 's/^bootstrap.servers=//p' "$out" | head -n1)
        [[ -n "$BOOTSTRAP" ]] && return 0
        kill -0 "$BROKER_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "the broker did not start; its output:" >&2
    cat "$out" >&2
    exit 1
}

# field NAME LINE: the value of NAME=... in a RESULT line.
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

# median of the arguments (mean of the middle two for an even count)
median() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "nan"; exit }
        if (NR % 2) printf "%.6g\n", v[(NR + 1) / 2]; else printf "%.6g\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# run_one TOOL WORKLOAD PAIR -> prints the RESULT line; the whole output goes to the log.
# Producer workloads write to a new topic; consumer workloads read all of $TOPIC (prefilled)
# in a group of their own (each tool picks a fresh unique group id by default).
run_one() {
    local tool=$1 w=$2 pair=$3 name
    name=$(basename "$tool")
    local log="$LOG_DIR/$w-$pair-$name.out"
    local ok=1
    if [[ "$MODE" == consume ]]; then
        # shellcheck disable=SC2086 # FLAGS is a word list on purpose
        "$tool" consume --bootstrap-server "$BOOTSTRAP" --topic "$TOPIC" --num-records "$N" $FLAGS >"$log" 2>&1 || ok=0
    else
        local topic="perf-$w-$name-$pair-$$-$RANDOM"
        # shellcheck disable=SC2086 # FLAGS is a word list on purpose
        "$tool" produce --bootstrap-server "$BOOTSTRAP" --topic "$topic" --num-records "$N" \
            --record-size "$SIZE" --partitions "$PARTS" $FLAGS >"$log" 2>&1 || ok=0
    fi
    if [[ $ok != 1 ]]; then
        echo "$name failed ($w, pair $pair); output in $log:" >&2
        tail -n 20 "$log" >&2
        exit 1
    fi
    grep '^RESULT ' "$log" | tail -n1
}

# prefill WORKLOAD PAIR: writes N records of SIZE bytes to a new topic of PARTS partitions
# with kafka-perf (P100's settings) and sets TOPIC.
prefill() {
    local w=$1 pair=$2
    TOPIC="perf-$w-$pair-$$-$RANDOM"
    local log="$LOG_DIR/$w-$pair-prefill.out"
    # shellcheck disable=SC2086 # PREFILL_FLAGS is a word list on purpose
    if ! "$OURS" produce --bootstrap-server "$BOOTSTRAP" --topic "$TOPIC" --num-records "$N" \
        --record-size "$SIZE" --partitions "$PARTS" $PREFILL_FLAGS >"$log" 2>&1; then
        echo "prefill failed ($w, pair $pair); output in $log:" >&2
        tail -n 20 "$log" >&2
        exit 1
    fi
}

fmt() { awk -v x="$1" -v d="$2" 'BEGIN { printf "%.*f", d, x }'; }

echo "# kafka-sdk vs librdkafka ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), PAIRS=$PAIRS, RECORDS_SCALE=$RECORDS_SCALE)"
echo
echo "Logs: $LOG_DIR"

for w in "${WORKLOADS[@]}"; do
    spec=$(workload_spec "$w")
    read -r N0 SIZE PARTS DESC <<<"${spec%%|*}"
    FLAGS=${spec#*|}
    MODE=produce
    if [[ "$FLAGS" == consume* ]]; then
        MODE=consume
        FLAGS=${FLAGS#consume}
    fi
    N=$(awk -v n="$N0" -v s="$RECORDS_SCALE" 'BEGIN { v = int(n * s); if (v < 1) v = 1; print v }')
    # Producer workloads share one broker per workload; consumer workloads get a fresh broker
    # per pair, prefilled once and read by both clients of the pair.
    if [[ "$MODE" == produce ]]; then start_broker "$w"; fi

    declare -a o_rps=() t_rps=() o_cpu=() t_cpu=() o_p50=() t_p50=() o_p99=() t_p99=() o_rss=() t_rss=() o_mbs=() t_mbs=()
    declare -a o_tot=() t_tot=() r_rps=() r_cpu=()
    echo
    echo "running $w: $N x $SIZE B, $PARTS partitions, $DESC; $PAIRS pairs" >&2
    for pair in $(seq 1 "$PAIRS"); do
        if [[ "$MODE" == consume ]]; then
            start_broker "$w-$pair"
            echo "  pair $pair: prefilling $N records on $BOOTSTRAP..." >&2
            prefill "$w" "$pair"
            sleep "$COOLDOWN"
        fi
        a=$(run_one "$OURS" "$w" "$pair"); sleep "$COOLDOWN"
        b=$(run_one "$THEIRS" "$w" "$pair"); sleep "$COOLDOWN"
        if [[ "$MODE" == consume ]]; then stop_broker; fi
        for c in o t; do
            if [[ $c == o ]]; then line=$a; else line=$b; fi
            eval "${c}_rps+=(\"$(field records_per_s "$line")\")"
            eval "${c}_mbs+=(\"$(field mb_per_s "$line")\")"
            eval "${c}_cpu+=(\"$(field cpu_ns_per_record "$line")\")"
            eval "${c}_p50+=(\"$(field p50_ms "$line")\")"
            eval "${c}_p99+=(\"$(field p99_ms "$line")\")"
            eval "${c}_tot+=(\"$(field total_secs "$line")\")"
            eval "${c}_rss+=(\"$(field peak_rss_mb "$line")\")"
        done
        r_rps+=("$(awk -v a="${o_rps[-1]}" -v b="${t_rps[-1]}" 'BEGIN { printf "%.4f", a / b }')")
        r_cpu+=("$(awk -v a="${o_cpu[-1]}" -v b="${t_cpu[-1]}" 'BEGIN { printf "%.4f", a / b }')")
        echo "  pair $pair: kafka-sdk ${o_rps[-1]} rec/s ${o_cpu[-1]} ns/rec | librdkafka ${t_rps[-1]} rec/s ${t_cpu[-1]} ns/rec | throughput x${r_rps[-1]}, cpu x${r_cpu[-1]}" >&2
    done
    stop_broker

    echo
    echo "### $w: $(printf "%'d" "$N") x $SIZE B, $PARTS partitions, $DESC ($PAIRS pairs)"
    echo
    if [[ "$MODE" == consume ]]; then
        echo "| client | records/s | MB/s | CPU ns/record | total s (incl. join) | peak RSS MB |"
        echo "|---|---:|---:|---:|---:|---:|"
        echo "| kafka-sdk | $(fmt "$(median "${o_rps[@]}")" 0) | $(fmt "$(median "${o_mbs[@]}")" 1) | $(fmt "$(median "${o_cpu[@]}")" 0) | $(fmt "$(median "${o_tot[@]}")" 2) | $(fmt "$(median "${o_rss[@]}")" 1) |"
        echo "| librdkafka | $(fmt "$(median "${t_rps[@]}")" 0) | $(fmt "$(median "${t_mbs[@]}")" 1) | $(fmt "$(median "${t_cpu[@]}")" 0) | $(fmt "$(median "${t_tot[@]}")" 2) | $(fmt "$(median "${t_rss[@]}")" 1) |"
    else
        echo "| client | records/s | MB/s | CPU ns/record | p50 ms | p99 ms | peak RSS MB |"
        echo "|---|---:|---:|---:|---:|---:|---:|"
        echo "| kafka-sdk | $(fmt "$(median "${o_rps[@]}")" 0) | $(fmt "$(median "${o_mbs[@]}")" 1) | $(fmt "$(median "${o_cpu[@]}")" 0) | $(fmt "$(median "${o_p50[@]}")" 2) | $(fmt "$(median "${o_p99[@]}")" 2) | $(fmt "$(median "${o_rss[@]}")" 1) |"
        echo "| librdkafka | $(fmt "$(median "${t_rps[@]}")" 0) | $(fmt "$(median "${t_mbs[@]}")" 1) | $(fmt "$(median "${t_cpu[@]}")" 0) | $(fmt "$(median "${t_p50[@]}")" 2) | $(fmt "$(median "${t_p99[@]}")" 2) | $(fmt "$(median "${t_rss[@]}")" 1) |"
    fi
    echo
    echo "- throughput ours/librdkafka, median of per-pair ratios: **$(fmt "$(median "${r_rps[@]}")" 2)x** (pairs: ${r_rps[*]})"
    echo "- CPU per record ours/librdkafka, median of per-pair ratios: **$(fmt "$(median "${r_cpu[@]}")" 2)x** (pairs: ${r_cpu[*]})"
    if [[ "$MODE" == consume ]]; then
        echo "- medians per client in the table; records/s and CPU from the first record received to the N-th (the group join is in the total only); CPU is the whole client process (user + system) per record"
    else
        echo "- medians per client in the table; CPU is the whole client process (user + system) per acknowledged record"
    fi
    unset o_rps t_rps o_cpu t_cpu o_p50 t_p50 o_p99 t_p99 o_rss t_rss o_mbs t_mbs o_tot t_tot r_rps r_cpu
done
