//! The policy gate: what a component may do, decided once at preparation.
//!
//! Threat model: a component is hostile. It gets nothing outside its own
//! memory unless an operator granted it. For a component that declares what
//! it requires (our SDK writes `airssys:capabilities`), the authority is what
//! is both required and granted, and a required capability that is not
//! granted refuses the component before it runs. A component that declares
//! nothing (the standard worlds, other toolchains) gets exactly its grants,
//! as with `wasmtime run --dir`. Denials win over grants. A small ambient set
//! (`clock`, `random`, `stdout`, `stderr`) is on unless denied.
//!
//! WASI 0.2 interfaces are always linked and deny by content (no preopens,
//! an empty environment, empty stdin, refused sockets); importing a host
//! interface beyond WASI 0.2 (`wasi:config`, `wasi:keyvalue`) without its
//! grant refuses the component, naming the grant to add.

use crate::Capability;
use crate::error::{Error, Result};

/// The capabilities on unless denied.
pub const AMBIENT: &[&str] = &["clock", "random", "stdout", "stderr"];

/// What an operator allows and forbids a component.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Grants {
    /// Capabilities granted.
    pub allow: Vec<Capability>,
    /// Capabilities denied; a denial wins over any grant.
    pub deny: Vec<Capability>,
}

impl Grants {
    /// Grant `cap`.
    pub fn allow(mut self, cap: Capability) -> Self {
        self.allow.push(cap);
        self
    }

    /// Deny `cap`.
    pub fn deny(mut self, cap: Capability) -> Self {
        self.deny.push(cap);
        self
    }
}

/// The decided authority of one prepared component.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Authority {
    effective: Vec<Capability>,
    /// Kept beside the effective set: a denial narrower than a grant
    /// (`env:SECRET` under `env:*`) must still win.
    deny: Vec<Capability>,
    dirs: Vec<Preopen>,
}

/// A granted directory: where it is on the host, where the guest sees it,
/// and whether it may write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Preopen {
    pub host: std::path::PathBuf,
    pub guest: String,
    pub write: bool,
}

fn system_call(name: &str) -> Capability {
    Capability::SystemCall(name.to_string())
}

/// Whether grant `g` covers the request `want` (equal, or `env:*` for any
/// `env:NAME`).
fn covers(g: &Capability, want: &Capability) -> bool {
    if g == want {
        return true;
    }
    matches!((g, want), (Capability::SystemCall(a), Capability::SystemCall(b)) if a == "env:*" && b.starts_with("env:"))
}

/// The CLI flag that grants `cap`, for hints.
pub fn grant_hint(cap: &Capability) -> String {
    match cap {
        Capability::FileRead(p) => format!("--allow-read {}", p.display()),
        Capability::FileWrite(p) => format!("--allow-write {}", p.display()),
        Capability::SystemCall(n) if n.starts_with("env:") && n != "env:*" => {
            format!("--allow-env {}", &n["env:".len()..])
        }
        other => format!("--allow {other}"),
    }
}

impl Authority {
    /// Decide what the component described by `info` may do under `grants`:
    /// the check `Runtime::prepare` makes, without preparing anything (for
    /// `inspect`).
    pub fn for_component(info: &crate::ComponentInfo, grants: &Grants) -> Result<Self> {
        Self::decide(
            &info.name,
            info.required().as_deref(),
            &info.imports,
            grants,
        )
    }

    /// Decide: `required` is `None` for a component that declares nothing.
    pub(crate) fn decide(
        component: &str,
        required: Option<&[Capability]>,
        imports: &[String],
        grants: &Grants,
    ) -> Result<Self> {
        let denied = |c: &Capability| grants.deny.iter().any(|d| covers(d, c));
        let granted = |c: &Capability| grants.allow.iter().any(|g| covers(g, c));
        let mut effective: Vec<Capability> = match required {
            Some(required) => {
                for want in required {
                    if !granted(want) && !AMBIENT.iter().any(|a| *want == system_call(a)) {
                        return Err(Error::NotGranted {
                            component: component.to_string(),
                            capability: want.to_string(),
                            hint: grant_hint(want),
                        });
                    }
                }
                // A grant that was not required is not given.
                required.to_vec()
            }
            None => grants.allow.clone(),
        };
        for a in AMBIENT {
            let cap = system_call(a);
            if !effective.contains(&cap) {
                effective.push(cap);
            }
        }
        effective.retain(|c| !denied(c));
        // File grants are directories, canonicalised now: what the guest
        // sees is fixed at preparation.
        let mut dirs = Vec::new();
        for c in &effective {
            let (path, write) = match c {
                Capability::FileRead(p) => (p, false),
                Capability::FileWrite(p) => (p, true),
                _ => continue,
            };
            let bad = |why: &str| Error::NotGranted {
                component: component.to_string(),
                capability: format!("{c} ({why})"),
                hint: "a directory that exists: files are granted by their directory".to_string(),
            };
            let host = std::fs::canonicalize(path).map_err(|e| bad(&e.to_string()))?;
            if !host.is_dir() {
                return Err(bad("it is not a directory; grant its directory"));
            }
            dirs.push(Preopen {
                host,
                guest: path.display().to_string(),
                write,
            });
        }
        let authority = Self {
            effective,
            deny: grants.deny.clone(),
            dirs,
        };
        // Host interfaces beyond WASI 0.2 are refused before running when
        // their grant is missing.
        for import in imports {
            let needed = if import.starts_with("wasi:config/") {
                Some("config")
            } else if import.starts_with("wasi:keyvalue/") {
                Some("state")
            } else {
                None
            };
            if let Some(name) = needed {
                let cap = system_call(name);
                if !authority.has(&cap) {
                    return Err(Error::NotGranted {
                        component: component.to_string(),
                        capability: format!("{cap} (it imports {import})"),
                        hint: grant_hint(&cap),
                    });
                }
            }
        }
        Ok(authority)
    }

    /// Whether the component holds `cap`.
    pub fn has(&self, cap: &Capability) -> bool {
        self.effective.iter().any(|c| covers(c, cap)) && !self.deny.iter().any(|d| covers(d, cap))
    }

    /// Whether the component holds `system-call:NAME`.
    pub fn has_system_call(&self, name: &str) -> bool {
        self.has(&system_call(name))
    }

    /// Everything the component holds.
    pub fn effective(&self) -> &[Capability] {
        &self.effective
    }

    /// The environment variables granted, with their values from `env`.
    pub(crate) fn environment(
        &self,
        env: impl Iterator<Item = (String, String)>,
    ) -> Vec<(String, String)> {
        env.filter(|(k, _)| self.has(&Capability::SystemCall(format!("env:{k}"))))
            .collect()
    }

    /// What every store of the component is built from, decided once so
    /// the call path only reads flags.
    pub(crate) fn store_profile(&self) -> StoreProfile {
        StoreProfile {
            env: self.environment(std::env::vars()),
            dirs: self.dirs.clone(),
            clock: self.has_system_call("clock"),
            random: self.has_system_call("random"),
            stdin: self.has_system_call("stdin"),
            stdout: self.has_system_call("stdout"),
            stderr: self.has_system_call("stderr"),
            args: self.has_system_call("args"),
        }
    }
}

/// The WASI context a component's stores get, from its authority.
#[derive(Debug, Clone, Default)]
pub(crate) struct StoreProfile {
    /// Granted variables, with the values they had at preparation.
    pub env: Vec<(String, String)>,
    /// Granted directories.
    pub dirs: Vec<Preopen>,
    pub clock: bool,
    pub random: bool,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub args: bool,
}

/// A wall clock that always reads the Unix epoch: what a component sees
/// when `system-call:clock` is denied.
pub(crate) struct FixedWallClock;

impl wasmtime_wasi::HostWallClock for FixedWallClock {
    fn resolution(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(1)
    }

    fn now(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

/// A logical monotonic clock: each reading is one nanosecond after the
/// last, so time moves forward and the same calls see the same times.
#[derive(Default)]
pub(crate) struct LogicalClock(std::sync::atomic::AtomicU64);

impl wasmtime_wasi::HostMonotonicClock for LogicalClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
    }
}

/// Seeded generators: what a component sees when `system-call:random` is
/// denied. The same calls produce the same bytes.
pub(crate) fn seeded_rng(seed: u64) -> rand::rngs::StdRng {
    use rand::SeedableRng;
    rand::rngs::StdRng::seed_from_u64(seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(list: &[&str]) -> Vec<Capability> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn grants(allow: &[&str], deny: &[&str]) -> Grants {
        Grants {
            allow: caps(allow),
            deny: caps(deny),
        }
    }

    #[test]
    fn a_required_capability_must_be_granted() {
        let err = Authority::decide(
            "c",
            Some(&caps(&["system-call:state"])),
            &[],
            &Grants::default(),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("system-call:state") && text.contains("--allow system-call:state"),
            "{text}"
        );
        let err = Authority::decide(
            "c",
            Some(&caps(&["system-call:env:HOME"])),
            &[],
            &Grants::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("--allow-env HOME"), "{err}");
    }

    #[test]
    fn only_what_is_both_required_and_granted_is_given() {
        let a = Authority::decide(
            "c",
            Some(&caps(&["system-call:env:HOME"])),
            &[],
            &grants(&["system-call:env:HOME", "system-call:env:PATH"], &[]),
        )
        .unwrap();
        assert!(a.has_system_call("env:HOME"));
        assert!(!a.has_system_call("env:PATH"), "granted but not required");
        assert!(a.has_system_call("clock"), "ambient");
    }

    #[test]
    fn without_declarations_the_grants_are_the_authority() {
        let a = Authority::decide("c", None, &[], &grants(&["system-call:env:*"], &[])).unwrap();
        assert!(a.has_system_call("env:ANYTHING"));
        assert!(!a.has_system_call("stdin"));
    }

    #[test]
    fn denials_win_over_grants_and_ambient() {
        let a = Authority::decide(
            "c",
            None,
            &[],
            &grants(
                &["system-call:env:*", "system-call:stdin"],
                &["system-call:env:SECRET", "system-call:clock"],
            ),
        )
        .unwrap();
        assert!(a.has_system_call("env:HOME"));
        assert!(!a.has_system_call("env:SECRET"));
        assert!(!a.has_system_call("clock"));
        assert!(a.has_system_call("random"));
    }

    #[test]
    fn host_interfaces_beyond_wasi_need_their_grant() {
        let imports = vec!["wasi:keyvalue/store@0.2.0-draft".to_string()];
        let err = Authority::decide("c", None, &imports, &Grants::default()).unwrap_err();
        assert!(
            err.to_string().contains("--allow system-call:state"),
            "{err}"
        );
        assert!(
            Authority::decide("c", None, &imports, &grants(&["system-call:state"], &[])).is_ok()
        );
        let denied = Authority::decide(
            "c",
            None,
            &imports,
            &grants(&["system-call:state"], &["system-call:state"]),
        );
        assert!(denied.is_err(), "a denial wins");
    }
}
