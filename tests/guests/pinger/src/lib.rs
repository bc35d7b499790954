//! A test component that measures messages to another component from the
//! inside, for the actor benchmark (it reads the monotonic clock, so it
//! needs `system-call:clock`):
//!
//! - `ping N TARGET`: N requests to TARGET, one after another, each timed;
//!   answers `p50_ns P p99_ns P total_ns T`;
//! - `fan N TARGET`: N sends to TARGET, then one request (answered once
//!   TARGET handled what came before it, on a one-instance actor); answers
//!   `total_ns T`.

use std::time::{Duration, Instant};

use airssys_wasm_sdk::{ComponentError, Handler, Message, component, messaging};

#[component(
    name = "pinger",
    version = "0.1.0",
    description = "Measures messages to another component from the inside, for the actor benchmark",
    capabilities = ["system-call:clock", "messaging:request:*", "messaging:send:*"],
)]
struct Pinger;

const WAIT: Duration = Duration::from_secs(10);

fn args(rest: &str) -> Result<(u32, &str), ComponentError> {
    let (n, target) = rest
        .split_once(' ')
        .ok_or_else(|| ComponentError::InvalidInput("expected N TARGET".to_owned()))?;
    let n = n
        .parse()
        .map_err(|_| ComponentError::InvalidInput(format!("`{n}` is not a count")))?;
    Ok((n, target))
}

fn nanos(d: Duration) -> u128 {
    d.as_nanos()
}

impl Handler for Pinger {
    fn execute(input: Message) -> Result<Message, ComponentError> {
        let text = input.payload_str()?.trim().to_owned();
        let (command, rest) = text.split_once(' ').unwrap_or((&text, ""));
        let (n, target) = args(rest)?;
        let msg = Message::text("p");
        let start = Instant::now();
        match command {
            "ping" => {
                let mut times = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    let t = Instant::now();
                    messaging::request(target, &msg, WAIT)?;
                    times.push(t.elapsed());
                }
                let total = start.elapsed();
                times.sort();
                let at = |p: f64| {
                    let i = ((times.len().saturating_sub(1)) as f64 * p).round() as usize;
                    times.get(i).copied().unwrap_or_default()
                };
                Ok(Message::text(format!(
                    "p50_ns {} p99_ns {} total_ns {}",
                    nanos(at(0.50)),
                    nanos(at(0.99)),
                    nanos(total)
                )))
            }
            "fan" => {
                for _ in 0..n {
                    messaging::send(target, &msg)?;
                }
                messaging::request(target, &msg, WAIT)?;
                Ok(Message::text(format!(
                    "total_ns {}",
                    nanos(start.elapsed())
                )))
            }
            other => Err(ComponentError::InvalidInput(format!(
                "pinger: unknown command `{other}`"
            ))),
        }
    }
}
