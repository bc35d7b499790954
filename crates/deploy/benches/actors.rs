//! Messages between two actor components through the host, beside the
//! floor of a raw tokio mpsc channel between two plain tasks, in one run.
//!
//! A `pinger` actor (tests/guests/pinger) times, from the inside, N
//! requests to an `echo` actor one after another (round trip p50 and p99,
//! requests per second), then N sends followed by one request that comes
//! back once echo handled them all (sends per second, handled). The floor
//! does the same with a request channel and oneshot answers between two
//! tokio tasks on the same runtime.
//!
//! `cargo bench -p airssys-wasm-deploy --bench actors`. Results and their
//! reading are in docs/benchmarks.md.

#![allow(missing_docs, reason = "benchmark binary")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark binary"
)]

use std::time::{Duration, Instant};

use airssys_wasm_deploy::{ActorSpec, DeploySpec, Deployer, Hosting, Provenance, StateDir};
use airssys_wasm_runtime::{Message, RuntimeConfig};
use airssys_wasm_test_guests::{ECHO, PINGER};
use tokio::sync::{mpsc, oneshot};

const PINGS: u32 = 20_000;
const SENDS: u32 = 200_000;
const MAILBOX: u32 = 1024;

/// What one side measured.
struct Measured {
    p50: Duration,
    p99: Duration,
    requests_per_s: f64,
    sends_per_s: f64,
}

fn field(text: &str, name: &str) -> u64 {
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        if w == name {
            return words.next().unwrap().parse().unwrap();
        }
    }
    panic!("no {name} in {text}")
}

async fn deploy(d: &mut Deployer, name: &str, file: &str, allow: &[&str]) {
    let bytes = std::fs::read(file).unwrap();
    d.registry()
        .publish(name, "0.1.0", &bytes, &Provenance::unsigned(), "bench")
        .unwrap();
    let mut spec = DeploySpec::new(name, "0.1.0");
    spec.allow = allow.iter().map(|s| (*s).to_string()).collect();
    spec.timeout_ms = Some(600_000);
    spec.hosting = Hosting::Actor;
    spec.actor = Some(ActorSpec {
        mailbox: Some(MAILBOX),
        send_timeout_ms: Some(60_000),
        ..ActorSpec::default()
    });
    d.deploy(spec, false, "bench").await.unwrap();
    d.serve(name).await.unwrap();
}

async fn through_the_host() -> Measured {
    let root = tempfile::tempdir().unwrap();
    let dir = StateDir::open(root.path().join("s")).unwrap();
    let mut d = Deployer::open(&dir, RuntimeConfig::default()).unwrap();
    deploy(&mut d, "echo", ECHO, &[]).await;
    deploy(
        &mut d,
        "pinger",
        PINGER,
        &[
            "system-call:clock",
            "messaging:request:*",
            "messaging:send:*",
        ],
    )
    .await;
    let pinger = d.route("pinger");
    let ask = async |command: String| {
        let out = pinger.execute(Message::new(command)).await.unwrap();
        String::from_utf8(out.output.value.payload).unwrap()
    };
    // Warm up both instances and the allocator.
    ask(format!("ping {} echo", PINGS / 10)).await;
    let ping = ask(format!("ping {PINGS} echo")).await;
    let fan = ask(format!("fan {SENDS} echo")).await;
    Measured {
        p50: Duration::from_nanos(field(&ping, "p50_ns")),
        p99: Duration::from_nanos(field(&ping, "p99_ns")),
        requests_per_s: f64::from(PINGS) / (field(&ping, "total_ns") as f64 / 1e9),
        sends_per_s: f64::from(SENDS + 1) / (field(&fan, "total_ns") as f64 / 1e9),
    }
}

type Letter = (Vec<u8>, Option<oneshot::Sender<Vec<u8>>>);

async fn floor() -> Measured {
    let (tx, mut rx) = mpsc::channel::<Letter>(MAILBOX as usize);
    tokio::spawn(async move {
        while let Some((payload, reply)) = rx.recv().await {
            if let Some(reply) = reply {
                let _ = reply.send(payload);
            }
        }
    });
    let request = async |tx: &mpsc::Sender<Letter>| {
        let (reply, answer) = oneshot::channel();
        tx.send((b"p".to_vec(), Some(reply))).await.unwrap();
        answer.await.unwrap();
    };
    for _ in 0..PINGS / 10 {
        request(&tx).await;
    }
    let mut times = Vec::with_capacity(PINGS as usize);
    let start = Instant::now();
    for _ in 0..PINGS {
        let t = Instant::now();
        request(&tx).await;
        times.push(t.elapsed());
    }
    let total = start.elapsed();
    times.sort();
    let at = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
    let start = Instant::now();
    for _ in 0..SENDS {
        tx.send((b"p".to_vec(), None)).await.unwrap();
    }
    request(&tx).await;
    let fan = start.elapsed();
    Measured {
        p50: at(0.50),
        p99: at(0.99),
        requests_per_s: f64::from(PINGS) / total.as_secs_f64(),
        sends_per_s: f64::from(SENDS + 1) / fan.as_secs_f64(),
    }
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let host = through_the_host().await;
    let raw = floor().await;
    println!(
        "| | request/response p50 | p99 | requests/s | sends/s (handled) |\n| --- | --- | --- | --- | --- |"
    );
    for (name, m) in [
        ("two actor components through the host", &host),
        ("raw tokio mpsc between two tasks (floor)", &raw),
    ] {
        println!(
            "| {name} | {} | {} | {:.0} | {:.0} |",
            us(m.p50),
            us(m.p99),
            m.requests_per_s,
            m.sends_per_s
        );
    }
}
