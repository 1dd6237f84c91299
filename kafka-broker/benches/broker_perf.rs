//! Broker CPU and memory per record: the broker binary in its own process, loaded over TCP
//! with pre-encoded requests, its CPU time read from /proc before and after.
//!
//! `cargo bench -p kafka-broker --bench broker_perf [-- MIB]` (default 256 MiB). Produce is
//! measured twice: into a growing log (every stored byte is memory the process takes from
//! the kernel, a page fault per 4 KiB) and into a log that retention holds at 64 MiB (the
//! steady state of a broker that has run a while, storing into recycled buffers). Targets
//! (issue 3): at most 100 ns of broker CPU per 100-byte record produced in 1 MiB batches, at
//! most 50 ns per record fetched, resident memory at most 1.25x the stored batch bytes.
//!
//! The same run measures floors: this binary started again with `--receive-floor` is a process
//! that only reads the same produce frames over TCP with blocking, copying reads (into new
//! memory, or into a ring of 64 MiB of recycled buffers) and answers each with a canned
//! response, or only writes the same held MiB back, one 1 MiB frame per request as the broker
//! answers these fetches. Its CPU per record is what the kernel's loopback path costs for a
//! server that receives and sends the way this broker does (copying `read`s and `write`s; not
//! zero-copy receive, `sendfile` or huge pages). The broker's share above it is printed with
//! the ratio. The floor runs after the broker phases, so the machine's drift between them goes
//! into the ratio: compare medians over several runs.
//! Linux only (reads /proc).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use kafka_protocol::frame::{self, FrameDecoder};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::records::{BatchOptions, ProducerState, RecordBatchBuilder, RecordSetIter};
use kafka_protocol::Request;

const BATCH_BYTES: usize = 1 << 20;
/// Bytes asked for per fetch (`max_bytes` and `partition_max_bytes`). Each 1 MiB batch still
/// comes back alone: the broker ends a read at a batch of 256 KiB or more.
const FETCH_BYTES: usize = 8 << 20;
const VALUE: [u8; 100] = [b'v'; 100];

/// Minor page faults of `pid` so far.
fn minor_faults(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    // minflt is field 10 of the whole line: 7 after the name.
    rest.split_whitespace().nth(7).unwrap().parse().unwrap()
}

/// User and system CPU ticks of `pid`.
fn cpu_ticks(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    (f[11].parse::<u64>().unwrap(), f[12].parse::<u64>().unwrap())
}

/// CPU time of every thread of `pid` in nanoseconds (the scheduler's own accounting, exact,
/// where the tick counts above have a resolution of 10 ms).
fn cpu_ns(pid: u32) -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let path = task.unwrap().path().join("schedstat");
        // A thread may have ended since the directory was read.
        if let Ok(stat) = std::fs::read_to_string(path) {
            total += stat.split_whitespace().next().unwrap().parse::<u64>().unwrap();
        }
    }
    total
}

/// CPU used by `pid` since `start` (from [`cpu_ns`] and [`cpu_ticks`]): total nanoseconds
/// and the share of it spent in the kernel.
struct Cpu {
    ns: u64,
    ticks: (u64, u64),
    faults: u64,
}

impl Cpu {
    fn now(pid: u32) -> Cpu {
        Cpu { ns: cpu_ns(pid), ticks: cpu_ticks(pid), faults: minor_faults(pid) }
    }
    /// (total ns, system share, page faults) since `self`.
    fn since(&self, pid: u32) -> (f64, f64, u64) {
        let (u, s) = cpu_ticks(pid);
        let (du, ds) = (u - self.ticks.0, s - self.ticks.1);
        let share = if du + ds == 0 { 0.0 } else { ds as f64 / (du + ds) as f64 };
        ((cpu_ns(pid) - self.ns) as f64, share, minor_faults(pid) - self.faults)
    }
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

struct Conn {
    s: TcpStream,
    buf: BytesMut,
    dec: FrameDecoder,
}

impl Conn {
    fn send<R: Request>(&mut self, corr: i32, req: &R, version: i16) {
        let mut out = BytesMut::new();
        frame::encode_request(&mut out, corr, Some("perf"), req, version).unwrap();
        self.s.write_all(&out).unwrap();
    }
    fn recv_frame(&mut self) -> Bytes {
        loop {
            if let Some(f) = self.dec.decode(&mut self.buf).unwrap() {
                return f;
            }
            let mut tmp = vec![0u8; 1 << 20];
            let n = self.s.read(&mut tmp).unwrap();
            assert!(n > 0, "broker closed the connection");
            self.buf.extend_from_slice(&tmp[..n]);
        }
    }
    fn recv<R: Request>(&mut self, version: i16) -> R::Response {
        frame::decode_response::<R::Response>(self.recv_frame(), version).unwrap().1
    }
}

/// A produce request (acks=1) of `batch` to partition 0 of `topic`, encoded once.
fn produce_frame(batch: &Bytes, topic: &str) -> Bytes {
    let req = ProduceRequest {
        transactional_id: None,
        acks: 1,
        timeout_ms: 30_000,
        topic_data: vec![TopicProduceData {
            name: topic.into(),
            partition_data: vec![PartitionProduceData { index: 0, records: Some(batch.clone()), ..Default::default() }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut frame_bytes = BytesMut::new();
    frame::encode_request(&mut frame_bytes, 7, Some("perf"), &req, 9).unwrap();
    frame_bytes.freeze()
}

/// Sends `frame` `batches` times, with a window of 4 requests in flight.
fn produce(c: &mut Conn, frame: &Bytes, batches: usize) {
    let window = 4;
    for i in 0..batches + window {
        if i < batches {
            c.s.write_all(frame).unwrap();
        }
        if i >= window {
            let resp = c.recv::<ProduceRequest>(9);
            let p = &resp.responses[0].partition_responses[0];
            assert_eq!(p.error_code, 0, "produce refused: {:?}", p.error_message);
        }
    }
}

/// The `--receive-floor` process: prints its address like the broker, then serves each
/// connection on a thread of its own (see [`serve_floor`]).
fn receive_floor() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    println!("bootstrap.servers={}", listener.local_addr().unwrap());
    std::io::stdout().flush().unwrap();
    let response = ProduceResponse {
        responses: vec![TopicProduceResponse {
            name: "perf".into(),
            partition_responses: vec![PartitionProduceResponse { index: 0, ..Default::default() }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut canned = BytesMut::new();
    // The produce frames are encoded once, with correlation id 7.
    frame::encode_response(&mut canned, 7, &response, 9).unwrap();
    let canned = canned.freeze();
    for conn in listener.incoming() {
        let canned = canned.clone();
        std::thread::spawn(move || serve_floor(conn.unwrap(), &canned));
    }
}

/// Reads frames from `s` until it closes and answers each with `canned`. The first byte says
/// where the frames go: `g` into new memory that is kept (a growing log), `s` into a ring of
/// buffers that holds 64 MiB and reuses the oldest (the broker's steady state), or `f` for
/// [`serve_floor_fetch`].
fn serve_floor(mut s: TcpStream, canned: &[u8]) {
    s.set_nodelay(true).unwrap();
    let mut mode = [0u8; 1];
    s.read_exact(&mut mode).unwrap();
    if mode[0] == b'f' {
        return serve_floor_fetch(s);
    }
    let mut kept: Vec<Vec<u8>> = Vec::new();
    let (mut held, mut oldest) = (0usize, 0usize);
    loop {
        let mut size = [0u8; 4];
        if s.read_exact(&mut size).is_err() {
            return;
        }
        let n = u32::from_be_bytes(size) as usize;
        let full = mode[0] == b's' && held >= 64 << 20;
        let mut body = if full { std::mem::take(&mut kept[oldest]) } else { Vec::new() };
        if body.len() == n {
            // A recycled buffer, initialized by its first use: read straight into it.
            s.read_exact(&mut body).unwrap();
        } else {
            // New memory, not zeroed first (std reads into the spare capacity), so the
            // kernel's copy is the first touch, as in the broker.
            body.clear();
            body.reserve_exact(n);
            let got = (&mut s).take(n as u64).read_to_end(&mut body).unwrap();
            assert_eq!(got, n, "short frame");
        }
        if full {
            kept[oldest] = body;
            oldest = (oldest + 1) % kept.len();
        } else {
            held += n;
            kept.push(body);
        }
        s.write_all(canned).unwrap();
    }
}

/// The fetch side of the floor: holds as many MiB as the client names (8 bytes; filled with a
/// non-zero byte, so nothing faults later and no page is the shared zero page) and answers each
/// 8-byte request frame with the next of them in a frame of its own, as the broker answers
/// these fetches (one 1 MiB batch per response, sent from where it is stored).
fn serve_floor_fetch(mut s: TcpStream) {
    let mut count = [0u8; 8];
    s.read_exact(&mut count).unwrap();
    let held: Vec<Vec<u8>> = (0..u64::from_be_bytes(count)).map(|i| vec![i as u8 | 0x80; BATCH_BYTES]).collect();
    let mut next = 0;
    loop {
        let mut request = [0u8; 8];
        if s.read_exact(&mut request).is_err() {
            return;
        }
        let mut header = [0u8; 8];
        header[..4].copy_from_slice(&((BATCH_BYTES + 4) as u32).to_be_bytes());
        header[4..].copy_from_slice(&request[4..]);
        s.write_all(&header).unwrap();
        s.write_all(&held[next]).unwrap();
        next = (next + 1) % held.len();
    }
}

/// Starts a process with `args` (the broker, or this binary as the receive floor) and returns
/// it with the address it prints.
fn spawn_server(program: &str, args: &[&str], wrapper: &str) -> (Server, String) {
    let mut argv: Vec<String> = wrapper.split_whitespace().map(str::to_string).collect();
    argv.push(program.to_string());
    argv.extend(args.iter().map(|a| a.to_string()));
    let mut child = Command::new(&argv[0]).args(&argv[1..]).stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let bootstrap = loop {
        let line = lines.next().unwrap().unwrap();
        if let Some(b) = line.strip_prefix("bootstrap.servers=") {
            break b.to_string();
        }
    };
    // Keep reading what else it prints, so that its stdout never writes into a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (Server(child), bootstrap)
}

/// A server process that is killed when dropped, so a failing bench leaves none behind.
struct Server(std::process::Child);

impl Server {
    fn id(&self) -> u32 {
        self.0.id()
    }
    /// Waits for the process to exit (after it was told to).
    fn wait(&mut self) {
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A connection to the receive floor, in mode `g` or `s` (see [`serve_floor`]).
fn floor_conn(addr: &str, mode: u8) -> Conn {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(&[mode]).unwrap();
    Conn { s, buf: BytesMut::new(), dec: FrameDecoder::new(1 << 30) }
}

fn main() {
    if std::env::args().any(|a| a == "--receive-floor") {
        receive_floor();
        return;
    }
    let mib: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(256);
    assert!(mib > 0, "MIB must be at least 1");
    // BROKER_PERF_WRAPPER="valgrind --tool=callgrind" profiles the broker.
    let wrapper = std::env::var("BROKER_PERF_WRAPPER").unwrap_or_default();
    let broker_args = ["--listen", "127.0.0.1:0", "--log-level", "warn"];
    let (mut child, bootstrap) = spawn_server(env!("CARGO_BIN_EXE_kafka-broker"), &broker_args, &wrapper);
    let pid = child.id();
    let mut c =
        Conn { s: TcpStream::connect(&bootstrap).unwrap(), buf: BytesMut::new(), dec: FrameDecoder::new(1 << 30) };
    c.s.set_nodelay(true).unwrap();
    let create = CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: "perf".into(),
            num_partitions: 1,
            replication_factor: 1,
            ..Default::default()
        }],
        timeout_ms: 1000,
        ..Default::default()
    };
    c.send(1, &create, 7);
    assert_eq!(c.recv::<CreateTopicsRequest>(7).topics[0].error_code, 0);
    // A second topic whose log retention holds at a constant size: the steady state of a
    // broker that has run for a while (64 MiB kept, in 8 MiB segments).
    let config = |name: &str, value: &str| CreatableTopicConfig {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    };
    let create = CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: "steady".into(),
            num_partitions: 1,
            replication_factor: 1,
            configs: vec![
                config("retention.bytes", &(64 << 20).to_string()),
                config("segment.bytes", &(8 << 20).to_string()),
            ],
            ..Default::default()
        }],
        timeout_ms: 1000,
        ..Default::default()
    };
    c.send(2, &create, 7);
    assert_eq!(c.recv::<CreateTopicsRequest>(7).topics[0].error_code, 0);

    // One 1 MiB batch of 100-byte values, sent again and again (offsets are the broker's).
    let mut b = RecordBatchBuilder::with_capacity(BATCH_BYTES + 4096, BatchOptions::default());
    let mut records_per_batch = 0u64;
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    while b.size_in_bytes() + 120 <= BATCH_BYTES {
        // A current timestamp: time-based retention would delete older records mid-run.
        b.append(now_ms, None, Some(&VALUE), &[]).unwrap();
        records_per_batch += 1;
    }
    let batch = b.seal(ProducerState::NONE).unwrap();
    let frame_bytes = produce_frame(&batch, "perf");
    let batches = mib;
    let rss_before = rss_bytes(pid);

    let cpu0 = Cpu::now(pid);
    let t0 = Instant::now();
    produce(&mut c, &frame_bytes, batches);
    let produce_wall = t0.elapsed();
    let (produce_cpu_ns, produce_sys, produce_faults) = cpu0.since(pid);
    let stored = (batches * batch.len()) as u64;
    let rss = rss_bytes(pid);
    let produced = records_per_batch * batches as u64;

    // Fetch everything back, 8 MiB per response.
    let cpu1 = Cpu::now(pid);
    let t1 = Instant::now();
    let mut offset = 0i64;
    let mut fetched = 0u64;
    let mut corr = 100;
    while fetched < produced {
        let req = FetchRequest {
            replica_id: -1,
            max_wait_ms: 0,
            max_bytes: FETCH_BYTES as i32,
            session_epoch: -1,
            topics: vec![FetchTopic {
                topic: "perf".into(),
                partitions: vec![FetchPartition {
                    partition: 0,
                    current_leader_epoch: -1,
                    fetch_offset: offset,
                    partition_max_bytes: FETCH_BYTES as i32,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        corr += 1;
        c.send(corr, &req, 11);
        let resp = c.recv::<FetchRequest>(11);
        let part = &resp.responses[0].partitions[0];
        let data = part.records.clone().unwrap();
        assert!(
            !data.is_empty(),
            "empty fetch at offset {offset}: error {} high watermark {} log start {}",
            part.error_code,
            part.high_watermark,
            part.log_start_offset
        );
        for e in RecordSetIter::new(data) {
            let e = e.unwrap();
            fetched += (e.last_offset() - e.base_offset() + 1) as u64;
            offset = e.last_offset() + 1;
        }
    }
    let fetch_wall = t1.elapsed();
    let (fetch_cpu_ns, fetch_sys, fetch_faults) = cpu1.since(pid);

    // Steady state: once "steady" holds its 64 MiB (after 128 MiB), every batch produced
    // replaces one that retention drops.
    let steady_frame = produce_frame(&batch, "steady");
    produce(&mut c, &steady_frame, 128);
    let rss_steady = rss_bytes(pid);
    // For attaching a profiler to one phase (`perf record -p <pid>`).
    eprintln!("broker_perf: steady produce phase starts (broker pid {pid})");
    let cpu2 = Cpu::now(pid);
    let t2 = Instant::now();
    produce(&mut c, &steady_frame, batches);
    let steady_wall = t2.elapsed();
    let (steady_cpu_ns, steady_sys, steady_faults) = cpu2.since(pid);
    let steady_rss_growth = rss_bytes(pid) as i64 - rss_steady as i64;

    // SIGTERM, so the broker (and a profiler around it) exits cleanly.
    let _ = Command::new("kill").arg(pid.to_string()).status();
    child.wait();

    // The floors, loaded the same way: produce into a growing log, produce after the same
    // warm-up into recycled buffers, and fetch (`batches` MiB sent back, one 1 MiB frame per
    // request). Each runs in a process of its own: the CPU of a thread that has exited drops
    // out of /proc/<pid>/task, so one process must not serve two phases.
    let ask = |c: &mut Conn, i: i32| {
        let mut request = [0u8; 8];
        request[..4].copy_from_slice(&4u32.to_be_bytes());
        request[4..].copy_from_slice(&i.to_be_bytes());
        c.s.write_all(&request).unwrap();
        assert_eq!(c.recv_frame().len(), BATCH_BYTES + 4);
    };
    let floor_phase = |mode: u8| {
        let me = std::env::current_exe().unwrap();
        let (floor, addr) = spawn_server(me.to_str().unwrap(), &["--receive-floor"], "");
        let floor_pid = floor.id();
        let mut c = floor_conn(&addr, mode);
        match mode {
            b's' => {
                produce(&mut c, &frame_bytes, 128);
                eprintln!("broker_perf: receive floor's recycled phase starts (pid {floor_pid})");
            }
            b'f' => {
                c.s.write_all(&(batches as u64).to_be_bytes()).unwrap();
                // One round trip first, so the held MiB are filled before the measurement.
                ask(&mut c, 0);
            }
            _ => {}
        }
        let cpu = Cpu::now(floor_pid);
        if mode == b'f' {
            (0..batches).for_each(|i| ask(&mut c, i as i32));
        } else {
            produce(&mut c, &frame_bytes, batches);
        }
        cpu.since(floor_pid)
    };
    let (floor_growing_ns, floor_growing_sys, floor_growing_faults) = floor_phase(b'g');
    let (floor_fetch_ns, floor_fetch_sys, _) = floor_phase(b'f');
    let (floor_steady_ns, floor_steady_sys, floor_steady_faults) = floor_phase(b's');

    let mib_s = |bytes: u64, d: std::time::Duration| bytes as f64 / (1 << 20) as f64 / d.as_secs_f64();
    println!("broker_perf: {batches} x 1 MiB batches, {records_per_batch} records of 100 B each ({produced} records)");
    println!(
        "  produce, growing log: {:.1} ns broker CPU/record (target <= 100; {:.0}% in the kernel, {:.0} page faults/MiB), {:.0} MiB/s wall",
        produce_cpu_ns / produced as f64,
        produce_sys * 100.0,
        produce_faults as f64 / batches as f64,
        mib_s(stored, produce_wall)
    );
    println!(
        "  produce, steady state (log held at 64 MiB by retention.bytes): {:.1} ns broker CPU/record ({:.0}% in the kernel, {:.0} page faults/MiB, RSS {:+.1} MiB), {:.0} MiB/s wall",
        steady_cpu_ns / produced as f64,
        steady_sys * 100.0,
        steady_faults as f64 / batches as f64,
        steady_rss_growth as f64 / (1 << 20) as f64,
        mib_s(stored, steady_wall)
    );
    println!(
        "  fetch:   {:.1} ns broker CPU/record (target <= 50; {:.0}% in the kernel, {:.0} page faults/MiB), {:.0} MiB/s wall",
        fetch_cpu_ns / fetched as f64,
        fetch_sys * 100.0,
        fetch_faults as f64 / batches as f64,
        mib_s(stored, fetch_wall)
    );
    let per = |ns: f64| ns / produced as f64;
    println!(
        "  receive floor (a process that only reads the same frames): growing {:.1} ns/record ({:.0}% in the kernel, {:.0} page faults/MiB), recycled {:.1} ns/record ({:.0}% in the kernel, {:.0} page faults/MiB)",
        per(floor_growing_ns),
        floor_growing_sys * 100.0,
        floor_growing_faults as f64 / batches as f64,
        per(floor_steady_ns),
        floor_steady_sys * 100.0,
        floor_steady_faults as f64 / batches as f64,
    );
    println!(
        "  send floor (a process that only writes {} MiB back, 1 MiB per request): {:.1} ns/record ({:.0}% in the kernel)",
        batches,
        per(floor_fetch_ns),
        floor_fetch_sys * 100.0,
    );
    println!(
        "  broker above the floor: produce growing {:+.1} ns/record ({:.2}x), produce steady state {:+.1} ns/record ({:.2}x), fetch {:+.1} ns/record ({:.2}x)",
        per(produce_cpu_ns) - per(floor_growing_ns),
        produce_cpu_ns / floor_growing_ns,
        per(steady_cpu_ns) - per(floor_steady_ns),
        steady_cpu_ns / floor_steady_ns,
        fetch_cpu_ns / fetched as f64 - per(floor_fetch_ns),
        fetch_cpu_ns / fetched as f64 / per(floor_fetch_ns),
    );
    println!(
        "  memory:  RSS grew {:.1} MiB for {:.1} MiB stored: {:.3}x (target <= 1.25); RSS {:.1} MiB before",
        (rss.saturating_sub(rss_before)) as f64 / (1 << 20) as f64,
        stored as f64 / (1 << 20) as f64,
        rss.saturating_sub(rss_before) as f64 / stored as f64,
        rss_before as f64 / (1 << 20) as f64
    );
}
