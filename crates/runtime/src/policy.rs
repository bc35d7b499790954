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

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::Capability;
use crate::error::{Error, Result};

/// The capabilities on unless denied.
pub const AMBIENT: &[&str] = &["clock", "random", "stdout", "stderr"];

/// One grant: a capability, where a granted directory appears inside the
/// guest, and when the grant ends.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Grant {
    /// What is granted.
    pub capability: Capability,
    /// For `file-read` and `file-write`: the path the guest sees the
    /// directory at (default: its host path).
    pub mount: Option<String>,
    /// When the grant ends; after that it is gone, as if never given.
    pub expires: Option<SystemTime>,
}

impl Grant {
    /// A grant of `capability`, mounted at its own path, without an end.
    pub fn new(capability: Capability) -> Self {
        Self {
            capability,
            mount: None,
            expires: None,
        }
    }

    /// Show a granted directory to the guest at `guest` (an absolute path).
    pub fn mount(mut self, guest: impl Into<String>) -> Self {
        self.mount = Some(guest.into());
        self
    }

    /// End the grant at `when`.
    pub fn expires(mut self, when: SystemTime) -> Self {
        self.expires = Some(when);
        self
    }

    fn live(&self, now: SystemTime) -> bool {
        self.expires.is_none_or(|t| now < t)
    }
}

impl From<Capability> for Grant {
    fn from(capability: Capability) -> Self {
        Self::new(capability)
    }
}

impl std::fmt::Display for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.capability)?;
        if let Some(m) = &self.mount {
            write!(f, " (mounted at {m})")?;
        }
        if let Some(t) = self.expires {
            write!(f, " (until {})", rfc3339(t))?;
        }
        Ok(())
    }
}

/// `t` as an RFC 3339 date-time, whatever its value (humantime's
/// formatter cannot show years before 1970 or after 9999).
pub(crate) fn rfc3339(t: SystemTime) -> String {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Err(_) => "a time before 1970".to_string(),
        Ok(d) if d.as_secs() > 253_402_300_799 => format!("{} s after 1970", d.as_secs()),
        Ok(_) => humantime::format_rfc3339_seconds(t).to_string(),
    }
}

/// What an operator allows and forbids a component.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Grants {
    /// Capabilities granted.
    pub allow: Vec<Grant>,
    /// Capabilities denied; a denial wins over any grant.
    pub deny: Vec<Capability>,
}

impl Grants {
    /// Grant `grant` (a [`Capability`] or a [`Grant`]).
    pub fn allow(mut self, grant: impl Into<Grant>) -> Self {
        self.allow.push(grant.into());
        self
    }

    /// Deny `cap`.
    pub fn deny(mut self, cap: Capability) -> Self {
        self.deny.push(cap);
        self
    }
}

/// Host-wide rules, over every component: denials that win over any grant
/// (from the operator's policy file) and directories no file grant may
/// reach (the host's own state: its compiled-code cache, and what the
/// policy adds).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HostPolicy {
    /// Denied to every component.
    pub deny: Vec<Capability>,
    /// Directories that no file grant may contain or lie inside.
    pub protected: Vec<PathBuf>,
}

impl HostPolicy {
    /// Deny `cap` to every component.
    pub fn deny(mut self, cap: Capability) -> Self {
        self.deny.push(cap);
        self
    }

    /// Keep every file grant away from `dir`.
    pub fn protect(mut self, dir: impl Into<PathBuf>) -> Self {
        self.protected.push(dir.into());
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
    /// When the first grant in use ends: the authority must be decided
    /// again from then on.
    next_expiry: Option<SystemTime>,
    /// The capability whose grant ends then.
    expiring: Option<Capability>,
}

/// A granted directory: where it is on the host, where the guest sees it,
/// whether it may write, and the directory itself, opened once at
/// preparation (every call's guest gets a handle on the same descriptor:
/// no system call per call, and no path to swap between check and use).
#[derive(Clone)]
pub(crate) struct Preopen {
    pub host: std::path::PathBuf,
    pub guest: String,
    pub write: bool,
    pub dir: wasmtime_wasi::filesystem::Dir,
}

impl std::fmt::Debug for Preopen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Preopen")
            .field("host", &self.host)
            .field("guest", &self.guest)
            .field("write", &self.write)
            .finish_non_exhaustive()
    }
}

impl PartialEq for Preopen {
    fn eq(&self, other: &Self) -> bool {
        (&self.host, &self.guest, self.write) == (&other.host, &other.guest, other.write)
    }
}

impl Eq for Preopen {}

/// Open `path` as a directory handle for a preopen, as wasmtime-wasi's own
/// `preopened_dir` does (`O_DIRECTORY | O_PATH`).
fn open_dir(path: &Path, write: bool) -> std::io::Result<wasmtime_wasi::filesystem::Dir> {
    // Follows symlinks in `path`, as canonicalising it would: what counts
    // is the directory opened, checked by `opened_path` afterwards.
    use std::os::unix::fs::OpenOptionsExt;
    let flags = rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::PATH;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)?;
    let (perms, mode) = if write {
        (
            wasmtime_wasi::FsPerms::ReadWrite,
            wasmtime_wasi::OpenMode::READ | wasmtime_wasi::OpenMode::WRITE,
        )
    } else {
        (
            wasmtime_wasi::FsPerms::ReadOnly,
            wasmtime_wasi::OpenMode::READ,
        )
    };
    Ok(wasmtime_wasi::filesystem::Dir::new(
        file, perms, mode, false,
    ))
}

fn system_call(name: &str) -> Capability {
    Capability::SystemCall(name.to_string())
}

/// Whether grant `g` covers the request `want` (equal, or `env:*` for any
/// `env:NAME`).
/// Whether grant `g` satisfies requirement `want`: it covers it, and a
/// requirement naming addresses (`127.0.0.1`, `10.0.0.0/8`) is met only by
/// a grant naming addresses that hold them. Naming an address is what opens
/// loopback and private ranges: a component must not gain that from `*`.
fn satisfies(g: &Capability, want: &Capability) -> bool {
    use airssys_wasm_capability::outbound::{HostPattern, Hosts};
    if let (Capability::NetworkOutbound(a), Capability::NetworkOutbound(b)) = (g, want)
        && let (Ok(a), Ok(b)) = (a.parse::<HostPattern>(), b.parse::<HostPattern>())
        && matches!(b.hosts, Hosts::Net(_))
        && !matches!(a.hosts, Hosts::Net(_))
    {
        return false;
    }
    covers(g, want)
}

/// Whether `g` (a grant, or a denial) covers all of `want`: equal; `env:*`
/// for any `env:NAME`; a host pattern or messaging pattern that includes
/// the other; a custom capability of the same name (the grant's parameters
/// are the ones in force). Denials that cover only part of a grant are
/// enforced where the target is known (net.rs, messaging, preopens).
fn covers(g: &Capability, want: &Capability) -> bool {
    use airssys_wasm_capability::messaging::Grant as Msg;
    use airssys_wasm_capability::outbound::HostPattern;
    if g == want {
        return true;
    }
    match (g, want) {
        (Capability::Custom(a, _), Capability::Custom(b, _)) => a == b,
        (Capability::SystemCall(a), Capability::SystemCall(b)) => {
            if a == "env:*" {
                return b.starts_with("env:");
            }
            match (Msg::from_system_call(a), Msg::from_system_call(b)) {
                (Some(a), Some(b)) => a.includes(&b),
                _ => false,
            }
        }
        (Capability::NetworkOutbound(a), Capability::NetworkOutbound(b)) => {
            match (a.parse::<HostPattern>(), b.parse::<HostPattern>()) {
                (Ok(a), Ok(b)) => a.includes(&b),
                _ => false,
            }
        }
        _ => false,
    }
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

/// The inputs an authority is decided from, kept so that it can be decided
/// again when a grant ends.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub component: String,
    /// `None` for a component that declares nothing.
    pub required: Option<Vec<Capability>>,
    pub imports: Vec<String>,
    pub grants: Grants,
    pub host: HostPolicy,
    /// The runtime's custom capability providers.
    pub providers: Vec<crate::Provider>,
}

impl Authority {
    /// When the first grant this authority rests on ends.
    pub fn next_expiry(&self) -> Option<SystemTime> {
        self.next_expiry
    }

    /// The capability whose grant ends first, if any does.
    pub fn expiring(&self) -> Option<&Capability> {
        self.expiring.as_ref()
    }
}

impl Request {
    /// What `info`'s component asks under `options` and the host-wide
    /// `host` policy: its declared requirements (with those of its manifest)
    /// and its imports, against its grants.
    pub(crate) fn new(
        component: &str,
        info: &crate::ComponentInfo,
        options: &crate::PrepareOptions,
        host: &HostPolicy,
    ) -> Self {
        let mut required = info.required();
        if !options.requires.is_empty() {
            let r = required.get_or_insert_with(Vec::new);
            for c in &options.requires {
                if !r.contains(c) {
                    r.push(c.clone());
                }
            }
        }
        Self {
            component: component.to_string(),
            required,
            imports: info.imports.clone(),
            grants: options.grants.clone(),
            host: host.clone(),
            providers: Vec::new(),
        }
    }

    /// Decide the authority as of `now`: grants that ended are gone.
    pub(crate) fn decide(&self, now: SystemTime) -> Result<Authority> {
        let component = self.component.as_str();
        let live: Vec<&Grant> = self.grants.allow.iter().filter(|g| g.live(now)).collect();
        let deny: Vec<Capability> = self
            .host
            .deny
            .iter()
            .chain(&self.grants.deny)
            .cloned()
            .collect();
        let denied = |c: &Capability| deny.iter().any(|d| covers(d, c));
        // The covering grant that lasts longest: a requirement does not end
        // with a temporary grant while a lasting one also covers it.
        let grant_for = |c: &Capability| {
            live.iter()
                .copied()
                .filter(|g| satisfies(&g.capability, c))
                .max_by_key(|g| g.expires.map_or((1, SystemTime::UNIX_EPOCH), |t| (0, t)))
        };
        let not_granted = |want: &Capability| {
            let ended = self
                .grants
                .allow
                .iter()
                .find(|g| covers(&g.capability, want) && !g.live(now));
            let capability = match ended.and_then(|g| g.expires) {
                Some(t) => format!("{want} (its grant ended at {})", rfc3339(t)),
                None => want.to_string(),
            };
            Error::NotGranted {
                component: component.to_string(),
                capability,
                hint: grant_hint(want),
            }
        };
        // The grants in use: for a declaring component, the one covering
        // each requirement (a grant that was not required is not given).
        let mut used: Vec<Grant> = match &self.required {
            Some(required) => {
                let mut used = Vec::new();
                for want in required {
                    if AMBIENT.iter().any(|a| *want == system_call(a)) {
                        continue;
                    }
                    let Some(g) = grant_for(want) else {
                        return Err(not_granted(want));
                    };
                    let capability = match want {
                        Capability::Custom(..) => g.capability.clone(),
                        _ => want.clone(),
                    };
                    used.push(Grant {
                        capability,
                        mount: g.mount.clone(),
                        expires: g.expires,
                    });
                }
                used
            }
            None => live.iter().map(|g| (*g).clone()).collect(),
        };
        for a in AMBIENT {
            let cap = system_call(a);
            if !used.iter().any(|g| g.capability == cap) {
                used.push(Grant::new(cap));
            }
        }
        used.retain(|g| !denied(&g.capability));
        let dirs = self.preopens(&used)?;
        let authority = Authority {
            next_expiry: used.iter().filter_map(|g| g.expires).min(),
            expiring: used
                .iter()
                .filter(|g| g.expires.is_some())
                .min_by_key(|g| g.expires)
                .map(|g| g.capability.clone()),
            effective: used.into_iter().map(|g| g.capability).collect(),
            deny,
            dirs,
        };
        // Host interfaces beyond WASI 0.2 are refused before running when
        // their grant is missing.
        self.check_custom(&authority)?;
        // Patterns are checked when parsed; a capability built in code may
        // skip that.
        for c in authority.effective.iter().chain(&authority.deny) {
            if let Capability::NetworkOutbound(p) = c
                && let Err(why) = p.parse::<airssys_wasm_capability::outbound::HostPattern>()
            {
                return Err(Error::NotGranted {
                    component: component.to_string(),
                    capability: format!("{c} ({why})"),
                    hint: "a host pattern such as api.example.com:443".to_string(),
                });
            }
        }
        for import in &self.imports {
            if let Some(p) = self.providers.iter().find(|p| p.serves(import)) {
                if !authority.effective.iter().any(|c| {
                    matches!(c, Capability::Custom(n, _) if n == p.name())
                        && !authority.deny.iter().any(|d| covers(d, c))
                }) {
                    return Err(Error::NotGranted {
                        component: component.to_string(),
                        capability: format!("custom:{}:... (it imports {import})", p.name()),
                        hint: format!("--allow 'custom:{}:{{...}}'", p.name()),
                    });
                }
                continue;
            }
            if import.starts_with("airssys:component/messaging") {
                if authority.messaging().is_empty() {
                    return Err(Error::NotGranted {
                        component: component.to_string(),
                        capability: format!(
                            "messaging:send:TARGET, messaging:request:TARGET or messaging:publish:TOPIC (it imports {import})"
                        ),
                        hint: "--allow messaging:send:NAME".to_string(),
                    });
                }
                continue;
            }
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

    /// Every custom capability in force has a provider, which accepts its
    /// parameters.
    fn check_custom(&self, authority: &Authority) -> Result<()> {
        for c in &authority.effective {
            let Capability::Custom(name, params) = c else {
                continue;
            };
            let refuse = |why: String, hint: &str| Error::NotGranted {
                component: self.component.clone(),
                capability: format!("{c} ({why})"),
                hint: hint.to_string(),
            };
            let Some(p) = self.providers.iter().find(|p| p.name() == name) else {
                let known: Vec<&str> = self.providers.iter().map(crate::Provider::name).collect();
                return Err(refuse(
                    format!(
                        "this host has no provider named `{name}`; it has: {}",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                    "a host built with that provider",
                ));
            };
            p.0.store_state(params).map_err(|why| {
                refuse(
                    format!("the provider refused its parameters: {why}"),
                    "parameters the provider accepts",
                )
            })?;
        }
        Ok(())
    }

    /// File grants are directories, canonicalised now: what the guest sees
    /// is fixed at preparation. None may reach a protected directory, and
    /// no two may share a mount point.
    fn preopens(&self, used: &[Grant]) -> Result<Vec<Preopen>> {
        // Directories no grant may reach: the host's own (both ways), and
        // those denied (a denied `file-read` also stops `file-write`, which
        // reads too).
        let mut fences: Vec<(PathBuf, bool, String)> = self
            .host
            .protected
            .iter()
            .map(|p| {
                let why = format!(
                    "{} holds the host's own state, which no grant can open",
                    p.display()
                );
                (resolve_existing(p), true, why)
            })
            .collect();
        for d in &self
            .grants
            .deny
            .iter()
            .chain(&self.host.deny)
            .collect::<Vec<_>>()
        {
            let (p, stops_read) = match d {
                Capability::FileRead(p) => (p, true),
                Capability::FileWrite(p) => (p, false),
                _ => continue,
            };
            fences.push((resolve_existing(p), stops_read, format!("{d} is denied")));
        }
        let mut dirs: Vec<Preopen> = Vec::new();
        for g in used {
            let c = &g.capability;
            let bad = |why: String, hint: &str| Error::NotGranted {
                component: self.component.clone(),
                capability: format!("{c} ({why})"),
                hint: hint.to_string(),
            };
            let (path, write) = match c {
                Capability::FileRead(p) => (p, false),
                Capability::FileWrite(p) => (p, true),
                _ if g.mount.is_some() => {
                    return Err(bad(
                        "a mount point is only for file-read and file-write".into(),
                        "drop the mount point",
                    ));
                }
                _ => continue,
            };
            let dir_hint = "a directory that exists: files are granted by their directory";
            // Open first, then check what was opened: no path can be swapped
            // between the check and the use.
            let dir = open_dir(path, write).map_err(|e| {
                if e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) {
                    bad(
                        "it is not a directory; grant its directory".into(),
                        dir_hint,
                    )
                } else {
                    bad(e.to_string(), dir_hint)
                }
            })?;
            // Without /proc the directory opened cannot be told: refuse
            // rather than check a path that may have changed since.
            let host = opened_path(&dir).map_err(|e| {
                bad(
                    format!("cannot tell which directory was opened ({e})"),
                    "a host with /proc mounted",
                )
            })?;
            // By path, and by identity (device and inode) along both
            // chains of parents, so another mount of the same directory
            // does not get past a fence.
            let chain = identities(&host);
            for (fence, stops_read, why) in &fences {
                // A fence that does not exist yet has no identity of its own
                // (its parents' would fence its siblings too).
                let fence_chain = if fence.exists() {
                    identities(fence)
                } else {
                    Vec::new()
                };
                let overlaps = fence.starts_with(&host)
                    || host.starts_with(fence)
                    || chain.first().is_some_and(|id| fence_chain.contains(id))
                    || fence_chain.first().is_some_and(|id| chain.contains(id));
                if overlaps && (write || *stops_read) {
                    return Err(bad(why.clone(), "grant a directory outside it"));
                }
            }
            let guest = match &g.mount {
                Some(m) => {
                    check_mount(m).map_err(|why| bad(why, "write an absolute path like /data"))?;
                    guest_path(Path::new(m))
                }
                None if path.is_absolute() => guest_path(path),
                None => path.display().to_string(),
            };
            let guest = if guest.is_empty() { "/".into() } else { guest };
            if let Some(other) = dirs.iter().find(|d| d.guest == guest) {
                return Err(bad(
                    format!(
                        "{guest} is already the mount point of {}",
                        other.host.display()
                    ),
                    "mount it elsewhere: --allow-read HOST::GUEST",
                ));
            }
            dirs.push(Preopen {
                host,
                guest,
                write,
                dir,
            });
        }
        Ok(dirs)
    }
}

/// One spelling per mount point: `//data/` is `/data`.
fn guest_path(p: &Path) -> String {
    let parts: Vec<String> = p
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(p) => Some(p.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    format!("/{}", parts.join("/"))
}

/// The path a directory handle refers to, as the kernel sees it now.
fn opened_path(dir: &wasmtime_wasi::filesystem::Dir) -> std::io::Result<PathBuf> {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", dir.dir.as_raw_fd()))
}

/// The (device, inode) of `path` and of each of its parents, nearest first;
/// parents that cannot be read are left out.
fn identities(path: &Path) -> Vec<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    path.ancestors()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| (m.dev(), m.ino()))
        .collect()
}

/// `path` made absolute with `.` and `..` removed by their meaning in the
/// text (for a tail that does not exist, where the file system cannot say).
fn lexical(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = PathBuf::new();
    for c in absolute.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// `path` with symlinks resolved; for a path that does not exist (yet), its
/// longest existing ancestor resolved and the rest appended.
pub(crate) fn resolve_existing(path: &Path) -> PathBuf {
    if let Ok(p) = std::fs::canonicalize(path) {
        return p;
    }
    let absolute = lexical(path);
    let mut rest = Vec::new();
    let mut cur = absolute.as_path();
    while let Some(parent) = cur.parent() {
        if let Some(name) = cur.file_name() {
            rest.push(name.to_os_string());
        }
        if let Ok(base) = std::fs::canonicalize(parent) {
            let mut p = base;
            for r in rest.iter().rev() {
                p.push(r);
            }
            return p;
        }
        cur = parent;
    }
    absolute
}

/// A guest mount point: absolute, without `.` or `..` components.
fn check_mount(m: &str) -> std::result::Result<(), String> {
    let path = Path::new(m);
    if !path.is_absolute() {
        return Err(format!("mount point `{m}` is not an absolute path"));
    }
    if path.components().any(|c| {
        !matches!(
            c,
            std::path::Component::RootDir | std::path::Component::Normal(_)
        )
    }) {
        return Err(format!("mount point `{m}` has `.` or `..` in it"));
    }
    Ok(())
}

impl Authority {
    /// Whether the component holds `cap`.
    pub fn has(&self, cap: &Capability) -> bool {
        self.effective.iter().any(|c| covers(c, cap)) && !self.deny.iter().any(|d| covers(d, cap))
    }

    /// Whether the component holds `system-call:NAME`.
    pub fn has_system_call(&self, name: &str) -> bool {
        self.has(&system_call(name))
    }

    /// The messaging grants the component holds.
    pub fn messaging(&self) -> Vec<airssys_wasm_capability::messaging::Grant> {
        self.effective
            .iter()
            .filter(|c| !self.deny.iter().any(|d| covers(d, c)))
            .filter_map(|c| match c {
                Capability::SystemCall(n) => {
                    airssys_wasm_capability::messaging::Grant::from_system_call(n)
                }
                _ => None,
            })
            .collect()
    }

    /// The messaging denials in force: they win over any messaging grant,
    /// target by target.
    pub(crate) fn messaging_denied(&self) -> Vec<airssys_wasm_capability::messaging::Grant> {
        self.deny
            .iter()
            .filter_map(|c| match c {
                Capability::SystemCall(n) => {
                    airssys_wasm_capability::messaging::Grant::from_system_call(n)
                }
                _ => None,
            })
            .collect()
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
    pub(crate) fn store_profile(
        &self,
        audit: &crate::audit::Audit,
        providers: &[crate::Provider],
    ) -> StoreProfile {
        let custom = self
            .effective
            .iter()
            .filter(|c| !self.deny.iter().any(|d| covers(d, c)))
            .filter_map(|c| match c {
                Capability::Custom(name, params) => providers
                    .iter()
                    .find(|p| p.name() == name)
                    .map(|p| (p.clone(), params.clone())),
                _ => None,
            })
            .collect();
        StoreProfile {
            env: self.environment(
                std::env::vars_os()
                    .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
            ),
            dirs: self.dirs.clone(),
            clock: self.has_system_call("clock"),
            random: self.has_system_call("random"),
            stdin: self.has_system_call("stdin"),
            stdout: self.has_system_call("stdout"),
            stderr: self.has_system_call("stderr"),
            args: self.has_system_call("args"),
            dns: self.has_system_call("dns"),
            messaging: self.messaging(),
            messaging_denied: self.messaging_denied(),
            custom,
            net: std::sync::Arc::new(crate::net::NetPolicy::new(
                &self.effective,
                &self.deny,
                audit.clone(),
            )),
        }
    }
}

/// The WASI context a component's stores get, from its authority.
#[derive(Debug, Clone)]
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
    /// `wasi:sockets/ip-name-lookup`.
    pub dns: bool,
    /// Whom it may message.
    pub messaging: Vec<airssys_wasm_capability::messaging::Grant>,
    /// Whom it may not, whatever the grants say.
    pub messaging_denied: Vec<airssys_wasm_capability::messaging::Grant>,
    /// Custom capabilities in force, with their providers.
    pub custom: Vec<(crate::Provider, serde_json::Value)>,
    /// What sockets and outgoing HTTP may reach.
    pub net: std::sync::Arc<crate::net::NetPolicy>,
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
            allow: caps(allow).into_iter().map(Grant::new).collect(),
            deny: caps(deny),
        }
    }

    fn decide(
        component: &str,
        required: Option<&[Capability]>,
        imports: &[String],
        grants: &Grants,
    ) -> Result<Authority> {
        request(component, required, imports, grants).decide(SystemTime::now())
    }

    fn request(
        component: &str,
        required: Option<&[Capability]>,
        imports: &[String],
        grants: &Grants,
    ) -> Request {
        Request {
            component: component.into(),
            required: required.map(<[_]>::to_vec),
            imports: imports.to_vec(),
            grants: grants.clone(),
            host: HostPolicy::default(),
            providers: Vec::new(),
        }
    }

    #[test]
    fn a_required_capability_must_be_granted() {
        let err = decide(
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
        let err = decide(
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
        let a = decide(
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
        let a = decide("c", None, &[], &grants(&["system-call:env:*"], &[])).unwrap();
        assert!(a.has_system_call("env:ANYTHING"));
        assert!(!a.has_system_call("stdin"));
    }

    #[test]
    fn denials_win_over_grants_and_ambient() {
        let a = decide(
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
        let err = decide("c", None, &imports, &Grants::default()).unwrap_err();
        assert!(
            err.to_string().contains("--allow system-call:state"),
            "{err}"
        );
        assert!(decide("c", None, &imports, &grants(&["system-call:state"], &[])).is_ok());
        let denied = decide(
            "c",
            None,
            &imports,
            &grants(&["system-call:state"], &["system-call:state"]),
        );
        assert!(denied.is_err(), "a denial wins");

        let imports = vec!["airssys:component/messaging@0.1.0".to_string()];
        let err = decide("c", None, &imports, &Grants::default()).unwrap_err();
        assert!(
            err.to_string().contains("--allow messaging:send:NAME"),
            "{err}"
        );
        let a = decide(
            "c",
            None,
            &imports,
            &grants(&["messaging:request:billing-*"], &[]),
        )
        .unwrap();
        assert_eq!(a.messaging().len(), 1);
        let denied = decide(
            "c",
            None,
            &imports,
            &grants(
                &["messaging:request:billing-*"],
                &["messaging:request:billing-*"],
            ),
        );
        assert!(denied.is_err(), "a denial wins");
    }

    #[test]
    fn an_ended_grant_is_gone() {
        let now = SystemTime::now();
        let hour = std::time::Duration::from_secs(3600);
        let g = Grants::default()
            .allow(Grant::new("system-call:env:HOME".parse().unwrap()).expires(now + hour));
        let r = request("c", Some(&caps(&["system-call:env:HOME"])), &[], &g);
        let a = r.decide(now).unwrap();
        assert!(a.has_system_call("env:HOME"));
        assert_eq!(a.next_expiry(), Some(now + hour));
        let err = r.decide(now + hour).unwrap_err().to_string();
        assert!(err.contains("its grant ended at"), "{err}");
        // Declaring nothing: the ended grant is simply not there.
        let a = request("c", None, &[], &g).decide(now + hour).unwrap();
        assert!(!a.has_system_call("env:HOME"));
        assert_eq!(a.next_expiry(), None);
    }

    #[test]
    fn mounts_and_protected_directories() {
        let dir = std::env::temp_dir();
        let read = Capability::FileRead(dir.clone());
        let g = Grants::default().allow(Grant::new(read.clone()).mount("/data/"));
        let a = request("c", None, &[], &g)
            .decide(SystemTime::now())
            .unwrap();
        assert_eq!(a.dirs[0].guest, "/data");
        let g = Grants::default().allow(Grant::new(read.clone()).mount("//data//in/"));
        let a = request("c", None, &[], &g)
            .decide(SystemTime::now())
            .unwrap();
        assert_eq!(a.dirs[0].guest, "/data/in");
        for (mount, why) in [("data", "not an absolute path"), ("/a/../b", "`..`")] {
            let g = Grants::default().allow(Grant::new(read.clone()).mount(mount));
            let err = decide("c", None, &[], &g).unwrap_err().to_string();
            assert!(err.contains(why), "{mount}: {err}");
        }
        let twice = Grants::default()
            .allow(Grant::new(read.clone()).mount("/d"))
            .allow(Grant::new(Capability::FileWrite(dir.clone())).mount("/d"));
        let err = decide("c", None, &[], &twice).unwrap_err().to_string();
        assert!(err.contains("already the mount point"), "{err}");
        let mut r = request("c", None, &[], &Grants::default().allow(read));
        r.host = HostPolicy::default().protect(dir.join("airssys-protected-test"));
        let err = r.decide(SystemTime::now()).unwrap_err().to_string();
        assert!(err.contains("no grant can open"), "{err}");
        let env = Grants::default().allow(Grant::new(system_call("stdin")).mount("/x"));
        assert!(decide("c", None, &[], &env).is_err());
    }

    #[test]
    fn host_policy_denials_win() {
        let mut r = request("c", None, &[], &grants(&["system-call:stdin"], &[]));
        r.host = HostPolicy::default().deny(system_call("stdin"));
        assert!(
            !r.decide(SystemTime::now())
                .unwrap()
                .has_system_call("stdin")
        );
    }

    #[test]
    fn denials_and_requirements_are_matched_by_meaning() {
        // A denial covering a grant removes it whole.
        let a = decide(
            "c",
            None,
            &[],
            &grants(
                &[
                    "network-outbound:api.corp.example.com:443",
                    "messaging:send:billing-eu",
                ],
                &["network-outbound:*.corp.example.com", "messaging:send:*"],
            ),
        )
        .unwrap();
        assert!(
            !a.effective()
                .iter()
                .any(|c| matches!(c, Capability::NetworkOutbound(_)))
        );
        assert!(a.messaging().is_empty());
        // A wider grant satisfies a narrower requirement.
        let a = decide(
            "c",
            Some(&caps(&[
                "messaging:send:billing-eu",
                "network-outbound:api.example.com:443",
            ])),
            &[],
            &grants(
                &[
                    "messaging:send:billing-*",
                    "network-outbound:*.example.com:443",
                ],
                &[],
            ),
        )
        .unwrap();
        assert_eq!(a.messaging().len(), 1);
        // ...but not the other way round.
        assert!(
            decide(
                "c",
                Some(&caps(&["network-outbound:*.example.com"])),
                &[],
                &grants(&["network-outbound:api.example.com"], &[]),
            )
            .is_err()
        );
    }

    #[test]
    fn denied_directories_fence_file_grants() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path().canonicalize().unwrap();
        std::fs::create_dir_all(r.join("data/secret")).unwrap();
        let cap = |kind: &str, rel: &str| -> Capability {
            format!("{kind}:{}", r.join(rel).display()).parse().unwrap()
        };
        let try_ = |allow: Capability, deny: Capability| {
            decide("c", None, &[], &Grants::default().allow(allow).deny(deny))
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        // A grant holding a denied directory is refused.
        let err = try_(cap("file-read", "data"), cap("file-read", "data/secret")).unwrap_err();
        assert!(err.contains("is denied"), "{err}");
        // A denied read also stops a write grant (writing reads too)...
        assert!(try_(cap("file-write", "data"), cap("file-read", "data/secret")).is_err());
        // ...a denied write stops only writes.
        assert!(try_(cap("file-read", "data"), cap("file-write", "data")).is_ok());
        assert!(try_(cap("file-write", "data/secret"), cap("file-write", "data")).is_err());
        // Through `..` and a symlink alike.
        std::os::unix::fs::symlink(r.join("data"), r.join("link")).unwrap();
        assert!(
            try_(
                cap("file-read", "link"),
                cap("file-read", "data/../data/secret")
            )
            .is_err()
        );
        // A sibling is fine.
        std::fs::create_dir_all(r.join("data/public")).unwrap();
        assert!(
            try_(
                cap("file-read", "data/public"),
                cap("file-read", "data/secret")
            )
            .is_ok()
        );
    }

    #[test]
    fn expiry_times_out_of_range_are_shown_not_panicked_on() {
        let far = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(300_000_000_000);
        assert!(rfc3339(far).contains("s after 1970"));
        let g = Grant::new(system_call("stdin")).expires(far);
        assert!(g.to_string().contains("until"));
    }

    #[test]
    fn a_grant_of_every_host_does_not_meet_an_address_requirement() {
        for want in [
            "network-outbound:127.0.0.1:8080",
            "network-outbound:0.0.0.0/0",
        ] {
            let err = decide(
                "c",
                Some(&caps(&[want])),
                &[],
                &grants(&["network-outbound:*"], &[]),
            );
            assert!(err.is_err(), "{want} met by `*`");
        }
        assert!(
            decide(
                "c",
                Some(&caps(&["network-outbound:127.0.0.1:8080"])),
                &[],
                &grants(&["network-outbound:127.0.0.0/8"], &[]),
            )
            .is_ok()
        );
    }

    #[test]
    fn a_requirement_rests_on_the_grant_that_lasts_longest() {
        let now = SystemTime::now();
        let soon = now + std::time::Duration::from_secs(60);
        let g = Grants::default()
            .allow(
                Grant::new("network-outbound:api.example.com:443".parse().unwrap()).expires(soon),
            )
            .allow(Capability::NetworkOutbound("*.example.com".into()));
        let a = request(
            "c",
            Some(&caps(&["network-outbound:api.example.com:443"])),
            &[],
            &g,
        )
        .decide(now)
        .unwrap();
        assert_eq!(a.next_expiry(), None);
    }

    #[test]
    fn a_path_that_does_not_exist_resolves_by_its_text() {
        let p = resolve_existing(Path::new("/nonexistent-airssys/cache/../secret"));
        assert_eq!(p, Path::new("/nonexistent-airssys/secret"));
    }
}
