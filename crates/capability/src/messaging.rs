//! Messaging grants: which components a component may reach, and which
//! topics it may publish to or subscribe to.
//!
//! String form: `messaging:OP:PATTERN`, where OP is `send`, `request`,
//! `publish` or `subscribe`, and PATTERN is a component name (for `send`
//! and `request`) or a topic (for `publish` and `subscribe`): exact, `*`
//! for all, or a prefix ending in `*` (`billing-*`, `orders.*`). The
//! capability is held as [`Capability::SystemCall`](crate::Capability) with
//! that name, so it travels through the contract's `system-call` case; it is
//! shown as `messaging:OP:PATTERN`.

use std::fmt;

/// What a messaging grant allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Deliver a message to a component without waiting.
    Send,
    /// Deliver a message to a component and wait for its answer.
    Request,
    /// Deliver a message to every subscriber of a topic.
    Publish,
    /// Receive what is published on a topic.
    Subscribe,
}

impl Op {
    /// Its name in the string form.
    pub fn name(self) -> &'static str {
        match self {
            Op::Send => "send",
            Op::Request => "request",
            Op::Publish => "publish",
            Op::Subscribe => "subscribe",
        }
    }
}

/// A parsed messaging grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// What it allows.
    pub op: Op,
    /// Which targets: exact, `*`, or a prefix ending in `*`.
    pub pattern: String,
}

impl Grant {
    /// Parse the part after `messaging:` (`send:billing-*`).
    pub fn parse(value: &str) -> Result<Self, String> {
        let example = "for example `messaging:request:billing` or `messaging:publish:orders.*`";
        let (op, pattern) = value
            .split_once(':')
            .ok_or_else(|| format!("`messaging:{value}` needs OP:PATTERN ({example})"))?;
        let op = match op {
            "send" => Op::Send,
            "request" => Op::Request,
            "publish" => Op::Publish,
            "subscribe" => Op::Subscribe,
            other => {
                return Err(format!(
                    "unknown messaging operation `{other}`{}; expected send, request, publish or subscribe ({example})",
                    crate::did_you_mean(other, &["send", "request", "publish", "subscribe"])
                ));
            }
        };
        let body = pattern.strip_suffix('*').unwrap_or(pattern);
        if pattern.is_empty() {
            return Err(format!(
                "`messaging:{value}` needs a target after `{}:` ({example})",
                op.name()
            ));
        }
        if body.contains('*') {
            return Err(format!(
                "`*` only at the end of a messaging pattern, in `messaging:{value}`"
            ));
        }
        if let Some(c) = body
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')))
        {
            return Err(format!(
                "`{c}` has no place in a messaging pattern (`messaging:{value}`): use letters, digits, `-`, `_`, `.`, `/`"
            ));
        }
        Ok(Self {
            op,
            pattern: pattern.to_string(),
        })
    }

    /// The grant a `system-call` name holds, if it is a messaging one.
    pub fn from_system_call(name: &str) -> Option<Self> {
        Self::parse(name.strip_prefix("messaging:")?).ok()
    }

    /// Whether every target `other` allows, this allows too.
    pub fn includes(&self, other: &Grant) -> bool {
        if self.op != other.op {
            return false;
        }
        match self.pattern.strip_suffix('*') {
            Some(prefix) => other.pattern.starts_with(prefix),
            None => self.pattern == other.pattern,
        }
    }

    /// Whether this grant allows `op` on `target`.
    pub fn covers(&self, op: Op, target: &str) -> bool {
        self.op == op
            && match self.pattern.strip_suffix('*') {
                Some(prefix) => target.starts_with(prefix),
                None => self.pattern == target,
            }
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "messaging:{}:{}", self.op.name(), self.pattern)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let g = Grant::parse("request:billing-*").unwrap();
        assert!(g.covers(Op::Request, "billing-eu"));
        assert!(g.covers(Op::Request, "billing-"));
        assert!(!g.covers(Op::Request, "billing"));
        assert!(!g.covers(Op::Send, "billing-eu"));
        let exact = Grant::parse("publish:orders").unwrap();
        assert!(exact.covers(Op::Publish, "orders"));
        assert!(!exact.covers(Op::Publish, "orders.eu"));
        assert!(Grant::parse("send:*").unwrap().covers(Op::Send, "anyone"));
        let wide = Grant::parse("send:billing-*").unwrap();
        assert!(wide.includes(&Grant::parse("send:billing-eu").unwrap()));
        assert!(wide.includes(&Grant::parse("send:billing-eu-*").unwrap()));
        assert!(!wide.includes(&Grant::parse("send:bill*").unwrap()));
        assert!(!wide.includes(&Grant::parse("request:billing-eu").unwrap()));
        for (bad, why) in [
            ("sned:x", "did you mean `send`?"),
            ("send", "OP:PATTERN"),
            ("send:", "needs a target"),
            ("send:a*b", "only at the end"),
            ("send:a b", "no place"),
        ] {
            let err = Grant::parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
