//! The string form of capabilities (`file-read:/data`,
//! `system-call:state`...). Errors are whole sentences that say what to write
//! instead.

use std::path::PathBuf;

use crate::Capability;
use crate::suggest::did_you_mean;

/// The capability kinds, in the order of the WIT variant, then
/// `messaging` (held as a `system-call`).
pub(crate) const KINDS: &[&str] = &[
    "file-read",
    "file-write",
    "network-outbound",
    "network-inbound",
    "system-call",
    "custom",
    "messaging",
];

/// The closed set of `system-call` names; `env:NAME` is checked apart.
pub(crate) const SYSTEM_CALLS: &[&str] = &[
    "args", "stdin", "stdout", "stderr", "clock", "random", "dns", "config", "state",
];

fn kinds_list() -> String {
    KINDS.join(", ")
}

/// Parse one capability from its string form.
pub(crate) fn parse(text: &str) -> Result<Capability, String> {
    let Some((kind, value)) = text.split_once(':') else {
        return Err(missing_kind(text));
    };
    match kind {
        "file-read" => non_empty(text, value, "a path", "file-read:/data")
            .map(|p| Capability::FileRead(PathBuf::from(p))),
        "file-write" => non_empty(text, value, "a path", "file-write:/data/out")
            .map(|p| Capability::FileWrite(PathBuf::from(p))),
        "network-outbound" => non_empty(
            text,
            value,
            "a host pattern",
            "network-outbound:api.example.com:443",
        )
        .and_then(|v| {
            v.parse::<crate::outbound::HostPattern>()
                .map(|_| v)
                .map_err(|e| format!("in `{text}`: {e}"))
        })
        .map(Capability::NetworkOutbound),
        "network-inbound" => parse_port(text, value).map(Capability::NetworkInbound),
        "system-call" => parse_system_call(text, value).map(Capability::SystemCall),
        "custom" => parse_custom(text, value),
        "messaging" => crate::messaging::Grant::parse(value)
            .map(|g| Capability::SystemCall(format!("messaging:{}:{}", g.op.name(), g.pattern))),
        _ => Err(format!(
            "unknown capability kind `{kind}`{}; expected one of {} (for example `file-read:/data`)",
            did_you_mean(kind, KINDS),
            kinds_list(),
        )),
    }
}

fn missing_kind(text: &str) -> String {
    if text.is_empty() {
        return format!(
            "empty capability; write `KIND:VALUE` where KIND is one of {} (for example `system-call:state`)",
            kinds_list()
        );
    }
    let hint = if SYSTEM_CALLS.contains(&text) || text.starts_with("env") {
        format!(" (did you mean `system-call:{text}`?)")
    } else {
        " (for example `system-call:state` or `file-read:/data`)".to_owned()
    };
    format!(
        "capability `{text}` has no kind; write `KIND:VALUE` where KIND is one of {}{hint}",
        kinds_list()
    )
}

fn non_empty(text: &str, value: &str, what: &str, example: &str) -> Result<String, String> {
    if value.trim().is_empty() {
        Err(format!(
            "capability `{text}` needs {what} after the `:`, for example `{example}`"
        ))
    } else {
        Ok(value.to_owned())
    }
}

fn parse_port(text: &str, value: &str) -> Result<u16, String> {
    value.parse::<u16>().map_err(|_| {
        format!(
            "invalid port `{value}` in `{text}`; write a port number from 0 to 65535, for example `network-inbound:8080`"
        )
    })
}

fn parse_system_call(text: &str, value: &str) -> Result<String, String> {
    if SYSTEM_CALLS.contains(&value) || value == "env:*" {
        return Ok(value.to_owned());
    }
    if let Some(m) = value.strip_prefix("messaging:") {
        return crate::messaging::Grant::parse(m).map(|g| g.to_string());
    }
    if let Some(var) = value.strip_prefix("env:") {
        if var.is_empty() {
            return Err(format!(
                "`{text}` needs a variable name after `env:`: write `system-call:env:NAME` (for example `system-call:env:HOME`) or `system-call:env:*` for every variable"
            ));
        }
        if var.contains(['=', '\0']) || var.chars().any(char::is_whitespace) {
            return Err(format!(
                "invalid environment variable name `{var}` in `{text}`; write `system-call:env:NAME` (for example `system-call:env:HOME`) or `system-call:env:*` for every variable"
            ));
        }
        return Ok(value.to_owned());
    }
    let mut names: Vec<&str> = vec!["env:NAME", "env:*"];
    names.extend_from_slice(SYSTEM_CALLS);
    let hint = if value == "env" {
        " (did you mean `env:NAME` or `env:*`?)".to_owned()
    } else {
        did_you_mean(value, SYSTEM_CALLS)
    };
    Err(format!(
        "unknown system call `{value}` in `{text}`{hint}; expected one of {} (for example `system-call:clock`)",
        names.join(", ")
    ))
}

const CUSTOM_EXAMPLE: &str = r#"custom:acme:ledger:{"accounts":["main"]}"#;

/// `custom:NAME:JSON`: the provider name may itself contain `:`
/// (`acme:ledger`), so the split is at the first `:` after which the rest is
/// valid JSON. A JSON value never has a suffix, starting after one of its
/// own `:`, that is valid JSON too, so the first such split is the only one.
fn parse_custom(text: &str, value: &str) -> Result<Capability, String> {
    let split = value.match_indices(':').map(|(at, _)| at).find_map(|at| {
        let json = &value[at + 1..];
        serde_json::from_str::<serde_json::Value>(json)
            .ok()
            .map(|parsed| (at, parsed))
    });
    let Some((at, parsed)) = split else {
        return Err(format!(
            "capability `{text}` needs a provider name and JSON parameters: write `custom:NAME:JSON`, for example `{CUSTOM_EXAMPLE}` or `custom:acme:ledger:null`{}",
            json_error_hint(value)
        ));
    };
    let name = &value[..at];
    let json = &value[at + 1..];
    if !valid_custom_name(name) {
        return Err(format!(
            "invalid provider name `{name}` in `{text}`; use lowercase letters, digits, `-`, `_`, `.` and `/` in `:`-separated parts, for example `{CUSTOM_EXAMPLE}`"
        ));
    }
    if !(parsed.is_object() || parsed.is_null()) {
        return Err(format!(
            "the parameters of `{text}` must be a JSON object or `null`, found `{json}`; for example `{CUSTOM_EXAMPLE}`"
        ));
    }
    let _ = json;
    Ok(Capability::Custom(name.to_owned(), parsed))
}

/// The parse error of the likeliest JSON part (after the first `:` that is
/// followed by `{`), to say what is wrong with it.
fn json_error_hint(value: &str) -> String {
    value
        .match_indices(":{")
        .next()
        .and_then(|(at, _)| serde_json::from_str::<serde_json::Value>(&value[at + 1..]).err())
        .map(|err| format!(" (the JSON does not parse: {err})"))
        .unwrap_or_default()
}

fn valid_custom_name(name: &str) -> bool {
    !name.is_empty()
        && name.split(':').all(|part| {
            !part.is_empty()
                && part.chars().all(|c| {
                    c.is_ascii_lowercase()
                        || c.is_ascii_digit()
                        || matches!(c, '-' | '_' | '.' | '/')
                })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind() {
        assert_eq!(
            parse("file-read:/data"),
            Ok(Capability::FileRead("/data".into()))
        );
        assert_eq!(
            parse("file-write:/out"),
            Ok(Capability::FileWrite("/out".into()))
        );
        assert_eq!(
            parse("network-outbound:api.example.com:443"),
            Ok(Capability::NetworkOutbound("api.example.com:443".into()))
        );
        assert_eq!(
            parse("network-inbound:8080"),
            Ok(Capability::NetworkInbound(8080))
        );
        assert_eq!(
            parse("system-call:state"),
            Ok(Capability::SystemCall("state".into()))
        );
        assert_eq!(
            parse("system-call:env:HOME"),
            Ok(Capability::SystemCall("env:HOME".into()))
        );
        assert_eq!(
            parse("system-call:env:*"),
            Ok(Capability::SystemCall("env:*".into()))
        );
        assert_eq!(
            parse(r#"custom:acme:ledger:{"a":"b:c"}"#),
            Ok(Capability::Custom(
                "acme:ledger".into(),
                serde_json::json!({"a": "b:c"})
            ))
        );
        assert_eq!(
            parse("custom:acme:null"),
            Ok(Capability::Custom("acme".into(), serde_json::Value::Null))
        );
    }

    #[test]
    fn refuses_with_a_hint() {
        let err = parse("file-reed:/data").unwrap_err();
        assert!(err.contains("did you mean `file-read`?"), "{err}");
        assert!(
            parse("network-inbound:70000")
                .unwrap_err()
                .contains("invalid port")
        );
        assert!(
            parse("system-call:clocks")
                .unwrap_err()
                .contains("did you mean `clock`?")
        );
        assert!(
            parse("system-call:env:")
                .unwrap_err()
                .contains("system-call:env:HOME")
        );
        assert!(parse("state").unwrap_err().contains("system-call:state"));
        assert!(parse("file-read:").unwrap_err().contains("needs a path"));
        assert!(
            parse("custom:acme")
                .unwrap_err()
                .contains("custom:NAME:JSON")
        );
        assert!(
            parse("custom:acme:[1]")
                .unwrap_err()
                .contains("JSON object or `null`")
        );
        assert!(
            parse("custom:Acme:null")
                .unwrap_err()
                .contains("invalid provider name")
        );
        let err = parse(r#"custom:acme:{"a":}"#).unwrap_err();
        assert!(err.contains("does not parse"), "{err}");
    }
}
