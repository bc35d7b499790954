//! Audit events: every denial the host observes (a socket or HTTP check,
//! a bind or listen, one of our interfaces, a custom provider, a refusal
//! before running, a limit that stopped a call), handed to the embedder's
//! sink.
//!
//! A guest that loops on a denied call must not flood the log: per
//! component and capability kind, the first [`PER_MINUTE`] events of a
//! minute are delivered one by one; the rest are counted and delivered as
//! one summary event (its `suppressed` count), delivered with the next
//! event after the minute or at the end of the call, whichever comes first.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

/// Events delivered one by one per component and capability kind per
/// minute.
pub const PER_MINUTE: u32 = 10;

const WINDOW: Duration = Duration::from_secs(60);

/// What happened to the attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Decision {
    /// An operation during a call was refused; the guest saw an error.
    Denied,
    /// The component was refused before it ran.
    Refused,
    /// A limit stopped the call.
    Stopped,
}

/// One audited denial.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct AuditEvent {
    /// When it happened.
    #[serde(serialize_with = "rfc3339")]
    pub time: SystemTime,
    /// Which component.
    pub component: String,
    /// Its version, when it declares one.
    pub version: Option<String>,
    /// The capability that was asked for (`network-outbound:10.0.0.1:80`,
    /// `messaging:request:billing`, `limit:memory`).
    pub capability: String,
    /// What it was aimed at: a path, `host:port`, a variable, a component.
    pub target: String,
    /// What the host did.
    pub decision: Decision,
    /// Why, in words.
    pub reason: String,
    /// For a summary: how many more such events were not delivered one by
    /// one in this window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<u64>,
}

fn rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*t))
}

impl std::fmt::Display for AuditEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let decision = match self.decision {
            Decision::Denied => "denied",
            Decision::Refused => "refused",
            Decision::Stopped => "stopped",
        };
        let version = self
            .version
            .as_deref()
            .map(|v| format!(" {v}"))
            .unwrap_or_default();
        match self.suppressed {
            Some(n) => write!(
                f,
                "{decision} {} of {}{version} {n} more time(s) in this minute (last: {}: {})",
                self.capability, self.component, self.target, self.reason
            ),
            None => write!(
                f,
                "{decision} {} of {}{version}: {}: {}",
                self.capability, self.component, self.target, self.reason
            ),
        }
    }
}

/// Where audit events go: a function the embedder gives
/// [`RuntimeConfig::audit`](crate::RuntimeConfig::audit). It is called on
/// the thread that observed the denial, so it should be quick (send to a
/// channel, append to a buffer).
#[derive(Clone)]
pub struct AuditSink(Arc<dyn Fn(AuditEvent) + Send + Sync>);

impl AuditSink {
    /// A sink calling `f` for every event.
    pub fn new(f: impl Fn(AuditEvent) + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// Hand `event` to the sink (for a sink that forwards to another).
    pub fn send(&self, event: AuditEvent) {
        (self.0)(event);
    }
}

impl std::fmt::Debug for AuditSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditSink(..)")
    }
}

/// The runtime's rate limiter in front of the sink.
#[derive(Debug, Default)]
pub(crate) struct Auditor {
    sink: Option<AuditSink>,
    /// Per prepared component (its handle's id) and capability kind.
    windows: Mutex<HashMap<(u64, String), Window>>,
    next_id: AtomicU64,
}

#[derive(Debug)]
struct Window {
    start: Instant,
    delivered: u32,
    suppressed: u64,
    last: Option<AuditEvent>,
}

impl Auditor {
    pub(crate) fn new(sink: Option<AuditSink>) -> Self {
        Self {
            sink,
            windows: Mutex::default(),
            next_id: AtomicU64::new(1),
        }
    }

    /// Deliver `event`, or count it (in `pending` too) when its kind is
    /// over the rate.
    fn record(&self, id: u64, pending: &AtomicU64, event: AuditEvent) {
        let Some(sink) = &self.sink else { return };
        let kind = event
            .capability
            .split(':')
            .next()
            .unwrap_or_default()
            .to_string();
        let key = (id, kind);
        let now = Instant::now();
        let mut out = Vec::new();
        {
            let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
            // Windows of components long gone (or quiet) go, so the map
            // stays as large as what is active.
            if windows.len() >= 4096 {
                windows.retain(|_, w| w.suppressed > 0 || now.duration_since(w.start) < WINDOW);
            }
            let w = windows.entry(key).or_insert_with(|| Window {
                start: now,
                delivered: 0,
                suppressed: 0,
                last: None,
            });
            if now.duration_since(w.start) >= WINDOW {
                out.extend(summary(w));
                w.start = now;
                w.delivered = 0;
            }
            if w.delivered < PER_MINUTE {
                w.delivered += 1;
                out.push(event);
            } else {
                w.suppressed += 1;
                w.last = Some(event);
                pending.fetch_add(1, Ordering::Relaxed);
            }
        }
        for e in out {
            (sink.0)(e);
        }
    }

    /// Deliver the summaries of component `id`'s suppressed events (at
    /// the end of a call).
    fn flush(&self, id: u64) {
        let Some(sink) = &self.sink else { return };
        let mut out = Vec::new();
        {
            let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
            for ((c, _), w) in windows.iter_mut() {
                if *c == id {
                    out.extend(summary(w));
                }
            }
        }
        for e in out {
            (sink.0)(e);
        }
    }
}

/// The summary of a window's suppressed events, resetting the count.
fn summary(w: &mut Window) -> Option<AuditEvent> {
    let n = std::mem::take(&mut w.suppressed);
    let mut last = w.last.take()?;
    if n == 0 {
        return None;
    }
    last.suppressed = Some(n);
    last.time = SystemTime::now();
    Some(last)
}

/// One prepared component's handle on the auditor: who it is, for every
/// event, and its own rate windows.
#[derive(Debug, Clone)]
pub(crate) struct Audit {
    auditor: Arc<Auditor>,
    id: u64,
    component: Arc<str>,
    version: Option<Arc<str>>,
    /// Events counted but not delivered yet: the end of a call looks at
    /// the windows only when there are some.
    pending: Arc<AtomicU64>,
}

impl Audit {
    pub(crate) fn new(auditor: Arc<Auditor>, component: &str, version: Option<&str>) -> Self {
        Self {
            id: auditor.next_id.fetch_add(1, Ordering::Relaxed),
            auditor,
            component: component.into(),
            version: version.map(Into::into),
            pending: Arc::default(),
        }
    }

    /// Whether anyone listens (to skip formatting when nobody does).
    pub(crate) fn on(&self) -> bool {
        self.auditor.sink.is_some()
    }

    /// Record a denial.
    pub(crate) fn record(
        &self,
        decision: Decision,
        capability: impl Into<String>,
        target: impl Into<String>,
        reason: impl Into<String>,
    ) {
        if !self.on() {
            return;
        }
        self.auditor.record(
            self.id,
            &self.pending,
            AuditEvent {
                time: SystemTime::now(),
                component: self.component.to_string(),
                version: self.version.as_deref().map(str::to_string),
                capability: capability.into(),
                target: target.into(),
                decision,
                reason: reason.into(),
                suppressed: None,
            },
        );
    }

    /// Record a refusal before running: the capability as asked, and the
    /// error's own words as the reason.
    pub(crate) fn refused(&self, e: &crate::Error) {
        if let crate::Error::NotGranted { capability, .. } = e {
            let asked = capability.split(" (").next().unwrap_or(capability);
            self.record(Decision::Refused, asked, "-", e.to_string());
        }
    }

    /// Deliver pending summaries (at the end of a call).
    pub(crate) fn flush(&self) {
        if self.pending.swap(0, Ordering::Relaxed) > 0 {
            self.auditor.flush(self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_becomes_a_summary() {
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = {
            let got = got.clone();
            AuditSink::new(move |e| got.lock().unwrap().push(e))
        };
        let audit = Audit::new(Arc::new(Auditor::new(Some(sink))), "c", Some("1.0.0"));
        for i in 0..25 {
            audit.record(
                Decision::Denied,
                "network-outbound:x",
                format!("10.0.0.{i}:80"),
                "no grant",
            );
        }
        audit.record(Decision::Denied, "messaging:send:x", "x", "no grant");
        assert_eq!(
            got.lock().unwrap().len(),
            11,
            "10 of one kind, 1 of another"
        );
        audit.flush();
        let events = got.lock().unwrap();
        let last = events.last().unwrap();
        assert_eq!(last.suppressed, Some(15));
        assert_eq!(last.target, "10.0.0.24:80");
        assert!(last.to_string().contains("15 more time(s)"), "{last}");
        let json = serde_json::to_value(&events[0]).unwrap();
        assert_eq!(json["decision"], "denied");
        assert_eq!(json["version"], "1.0.0");
        assert!(json["time"].as_str().unwrap().ends_with('Z'));
        drop(events);
        audit.flush();
        assert_eq!(got.lock().unwrap().len(), 12, "nothing left to summarise");
    }
}
