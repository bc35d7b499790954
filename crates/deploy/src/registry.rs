//! The registry: immutable, content-addressed component versions in SQLite,
//! every change recorded in the audit trail in the same transaction.
//!
//! Durability: WAL mode with `synchronous = FULL`, so a commit is on disk
//! when it returns; "acknowledged" means the command printed success after
//! COMMIT. Blobs are written (temporary file, fsync, rename, fsync of the
//! directory) before the row that names them; a blob no row names is an
//! orphan that `gc` removes.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use sha2::{Digest as _, Sha256};

use crate::audit::{self, AuditRecord, Verified};
use crate::error::{Error, Result};
use crate::state_dir::StateDir;

/// Schema migrations, in order; the schema version is how many have run.
const MIGRATIONS: &[&str] = &[
    // 1: versions and the audit trail.
    "CREATE TABLE versions (
        name TEXT NOT NULL,
        version TEXT NOT NULL,
        digest TEXT NOT NULL,
        size INTEGER NOT NULL,
        signer TEXT,
        published_ms INTEGER NOT NULL,
        PRIMARY KEY (name, version)
    );",
    // 2: deployments, at most one active per component.
    "CREATE TABLE deployments (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        version TEXT NOT NULL,
        digest TEXT NOT NULL,
        spec TEXT NOT NULL,
        strategy TEXT NOT NULL,
        parent INTEGER REFERENCES deployments(id),
        state TEXT NOT NULL CHECK (state IN ('submitted', 'validated', 'prepared', 'active', 'retired', 'failed')),
        reason TEXT,
        actor TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL,
        FOREIGN KEY (name, version) REFERENCES versions(name, version)
    );
    CREATE UNIQUE INDEX one_active ON deployments(name) WHERE state = 'active';",
    // 3: the keys whose signatures this state directory trusts.
    "CREATE TABLE trusted_keys (
        id TEXT PRIMARY KEY,
        key TEXT NOT NULL,
        added_ms INTEGER NOT NULL
    );",
    // 4: versions whose bytes `gc` removed (their records stay, for history).
    "ALTER TABLE versions ADD COLUMN pruned_ms INTEGER;",
    // 5: components' state, by component name (it carries across versions).
    "CREATE TABLE state (
        component TEXT NOT NULL,
        bucket TEXT NOT NULL,
        key TEXT NOT NULL,
        value BLOB NOT NULL,
        PRIMARY KEY (component, bucket, key)
    );",
    // 6: state generations (`NAME#GENERATION`): an upgrade of a stateful
    // component migrates a copy; at most one canary per component.
    "ALTER TABLE deployments ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
    UPDATE state SET component = component || '#0';
    CREATE UNIQUE INDEX one_canary ON deployments(name) WHERE state = 'prepared' AND strategy = 'canary';",
    // 7: a canary's plan (JSON), so a restarted host resumes it as planned.
    "ALTER TABLE deployments ADD COLUMN plan TEXT;",
    // 8: named tokens of the control API (their sha256 only).
    "CREATE TABLE tokens (
        name TEXT PRIMARY KEY,
        sha256 TEXT NOT NULL UNIQUE,
        created_ms INTEGER NOT NULL,
        revoked_ms INTEGER
    );",
];

/// A named token of the control API, as listed (never the token itself).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenInfo {
    /// Its name: the audit trail's actor is `token:NAME`.
    pub name: String,
    /// When it was made, milliseconds since 1970.
    pub created_ms: i64,
    /// When it was revoked, if it was.
    pub revoked_ms: Option<i64>,
}

/// What `gc` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Collected {
    /// Versions whose bytes were removed (`name@version`), beyond the
    /// retention.
    pub pruned: Vec<String>,
    /// Blob files removed (pruned versions' and orphans').
    pub blobs: usize,
    /// Compiled-code files removed.
    pub compiled: usize,
    /// Bytes freed.
    pub bytes: u64,
    /// State entries removed: those of state generations no kept
    /// deployment runs on.
    pub state_entries: usize,
}

/// Where a version comes from: its signature, or the operator's explicit
/// allowance to publish it unsigned.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Provenance {
    /// A detached signature over the bytes' digest.
    pub signature: Option<crate::signing::Signature>,
    /// Publish without a (trusted) signature: for development.
    pub allow_unsigned: bool,
}

impl Provenance {
    /// Signed with `signature`.
    pub fn signed(signature: crate::signing::Signature) -> Self {
        Self {
            signature: Some(signature),
            allow_unsigned: false,
        }
    }

    /// Unsigned, explicitly allowed.
    pub fn unsigned() -> Self {
        Self {
            signature: None,
            allow_unsigned: true,
        }
    }
}

/// A published version.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Published {
    /// The component's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// `sha256:HEX` of its bytes.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
    /// Whether this call published it (false: the same bytes were there).
    pub created: bool,
}

/// The registry of one state directory.
#[derive(Debug)]
pub struct Registry {
    conn: Connection,
    blobs: PathBuf,
    tmp: PathBuf,
    head: PathBuf,
}

impl Registry {
    /// Open (creating or migrating) the registry of `dir`.
    pub fn open(dir: &StateDir) -> Result<Self> {
        let conn = Connection::open(dir.database())?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        crate::state::wait_briefly_when_busy(&conn)?;
        let mut this = Self {
            conn,
            blobs: dir.blobs(),
            tmp: dir.tmp(),
            head: dir.audit_head(),
        };
        this.migrate()?;
        this.repair_head()?;
        this.remove_orphans()?;
        Ok(this)
    }

    fn migrate(&mut self) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let known = i64::try_from(MIGRATIONS.len() + 1).unwrap_or(i64::MAX);
        if current > known {
            return Err(Error::SchemaTooNew {
                found: current,
                known,
            });
        }
        if current == 0 {
            tx.execute_batch(audit::SCHEMA)?;
        }
        for (i, sql) in MIGRATIONS.iter().enumerate() {
            let version = i64::try_from(i).unwrap_or(i64::MAX) + 2;
            if current < version {
                tx.execute_batch(sql)?;
            }
        }
        tx.pragma_update(None, "user_version", known)?;
        tx.commit()?;
        Ok(())
    }

    /// Blobs no version names: written by a publish that stopped before
    /// its row was committed (the blob is written first). The state
    /// directory is locked, so no publish is under way.
    fn remove_orphans(&self) -> Result<()> {
        let named: std::collections::HashSet<String> = {
            let mut stmt = self.conn.prepare("SELECT digest FROM versions")?;
            stmt.query_map([], |r| r.get::<_, String>(0))?
                .map(|d| d.map(|d| d.trim_start_matches("sha256:").to_string()))
                .collect::<Result<_, _>>()?
        };
        let mut removed = 0;
        for e in std::fs::read_dir(&self.blobs)
            .map_err(|e| Error::io(&self.blobs, e))?
            .flatten()
        {
            if !named.contains(e.file_name().to_string_lossy().as_ref())
                && std::fs::remove_file(e.path()).is_ok()
            {
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(
                removed,
                "removed blobs that no version names (an interrupted publish)"
            );
            crate::blob::sync_dir(&self.blobs)?;
        }
        Ok(())
    }

    /// Finish a head update that a crash interrupted. The next head is
    /// written (durably) before each commit and the head after it: if the
    /// table ends where the next head says and the head does not, the commit
    /// happened and the head is written now. Otherwise the next head is left
    /// as it is (a commit that did not happen). A missing or stale head is
    /// never rewritten from anything else: that is for `verify_audit` to
    /// report.
    fn repair_head(&self) -> Result<()> {
        let next = next_head(&self.head);
        let Some(staged) = std::fs::read_to_string(&next).ok() else {
            return Ok(());
        };
        let Some((seq, hash)) = audit::parse_head(&staged) else {
            return Ok(());
        };
        // Only a head one record behind the staged one, or missing or torn
        // (a crash while it was written), is finished; a head ahead of the
        // table is evidence for `verify_audit`.
        let current = std::fs::read_to_string(&self.head).unwrap_or_default();
        if current == staged {
            return Ok(());
        }
        let behind = match audit::parse_head(&current) {
            None => true,
            Some((at, _)) => at + 1 == seq || at == seq,
        };
        if !behind {
            return Ok(());
        }
        let last = audit::list(&self.conn)?.pop();
        if last.is_some_and(|r| r.seq == seq && r.hash == hash) {
            tracing::info!(seq, "audit head brought forward after an interrupted write");
            write_in_place(&self.head, &staged)?;
        }
        Ok(())
    }

    /// Publish `bytes` as `name` `version`. The same bytes again are a
    /// no-op; different bytes under a published version are refused.
    pub fn publish(
        &mut self,
        name: &str,
        version: &str,
        bytes: &[u8],
        provenance: &Provenance,
        actor: &str,
    ) -> Result<Published> {
        check_name(name)?;
        let parsed = semver::Version::parse(version).map_err(|e| {
            Error::Invalid(format!(
                "`{version}` is not a semver version ({e}); write e.g. 0.1.0"
            ))
        })?;
        let version = parsed.to_string();
        // A version must be a component this host can read.
        airssys_wasm_runtime::ComponentInfo::read(name, bytes)?;
        let hex = hex::encode(Sha256::digest(bytes));
        let digest = format!("sha256:{hex}");
        let signer = self.check_provenance(name, &digest, provenance)?;
        let size = bytes.len() as u64;
        match self.digest(name, &version)? {
            Some(d) if d == digest && self.pruned(name, &version)? => {
                // Its bytes were collected: published again, they are back.
                crate::blob::write(&self.blobs, &self.tmp, &hex, bytes)?;
                let tx = self.begin()?;
                tx.execute(
                    "UPDATE versions SET pruned_ms = NULL WHERE name = ?1 AND version = ?2",
                    params![name, version],
                )?;
                let head = audit::append(
                    &tx,
                    actor,
                    "restore",
                    &format!("{name}@{version}"),
                    &serde_json::json!({ "digest": digest }),
                )?;
                tx.commit(head)?;
                return Ok(Published {
                    name: name.to_string(),
                    version,
                    digest,
                    size,
                    created: true,
                });
            }
            Some(d) if d == digest => {
                return Ok(Published {
                    name: name.to_string(),
                    version,
                    digest,
                    size,
                    created: false,
                });
            }
            Some(d) => {
                return Err(Error::Immutable {
                    name: name.to_string(),
                    version,
                    existing: d,
                });
            }
            None => {}
        }
        // The blob first: a row never names bytes that are not there.
        crate::blob::write(&self.blobs, &self.tmp, &hex, bytes)?;
        let tx = self.begin()?;
        tx.execute(
            "INSERT INTO versions (name, version, digest, size, signer, published_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, strftime('%s','now') * 1000)",
            params![name, version, digest, size as i64, signer],
        )?;
        let details = serde_json::json!({
            "digest": digest,
            "size": size,
            "signer": signer,
            "unsigned_allowed": signer.is_none(),
        });
        let head = audit::append(
            &tx,
            actor,
            "publish",
            &format!("{name}@{version}"),
            &details,
        )?;
        tx.commit(head)?;
        Ok(Published {
            name: name.to_string(),
            version,
            digest,
            size,
            created: true,
        })
    }

    /// The key id that signed `digest`, refusing what is unsigned (unless
    /// allowed), signed by an untrusted key, or badly signed.
    fn check_provenance(
        &self,
        name: &str,
        digest: &str,
        provenance: &Provenance,
    ) -> Result<Option<String>> {
        let Some(sig) = &provenance.signature else {
            if provenance.allow_unsigned {
                return Ok(None);
            }
            return Err(Error::Invalid(format!(
                "{name} is unsigned: sign it (`airssys-wasm sign FILE --key KEY`), trust the key \
                 (`airssys-wasm trust add KEY.pub`), or publish with --allow-unsigned (for development)"
            )));
        };
        let signer = sig.verify(digest)?;
        let trusted: bool = self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM trusted_keys WHERE id = ?1 AND key = ?2)",
            params![signer.id, signer.key],
            |r| r.get(0),
        )?;
        if !trusted {
            return Err(Error::Invalid(format!(
                "{name} is signed by key {}, which this state directory does not trust; trust it with `airssys-wasm trust add KEY.pub`",
                signer.id
            )));
        }
        Ok(Some(signer.id))
    }

    /// Trust `key`'s signatures; false when it was already trusted.
    pub fn trust(&mut self, key: &crate::signing::PublicKey, actor: &str) -> Result<bool> {
        let tx = self.begin()?;
        let n = tx.execute(
            "INSERT OR IGNORE INTO trusted_keys (id, key, added_ms) VALUES (?1, ?2, strftime('%s','now') * 1000)",
            params![key.id, key.key],
        )?;
        if n == 0 {
            return Ok(false);
        }
        let head = audit::append(
            &tx,
            actor,
            "trust",
            &format!("key:{}", key.id),
            &serde_json::json!({ "key": key.key }),
        )?;
        tx.commit(head)?;
        Ok(true)
    }

    /// Make a named token for the control API: 32 random bytes, hex. Only
    /// its sha256 is kept; the token is returned once. A name in use (even
    /// revoked) is refused.
    pub fn create_token(&mut self, name: &str, actor: &str) -> Result<String> {
        check_name(name)?;
        let mut raw = [0_u8; 32];
        getrandom::fill(&mut raw)
            .map_err(|e| Error::Invalid(format!("no randomness for a token: {e}")))?;
        let token = hex::encode(raw);
        let sha = hex::encode(Sha256::digest(token.as_bytes()));
        let tx = self.begin()?;
        let n = tx.execute(
            "INSERT OR IGNORE INTO tokens (name, sha256, created_ms) VALUES (?1, ?2, ?3)",
            params![name, sha, audit::now_ms()],
        )?;
        if n == 0 {
            return Err(Error::Invalid(format!(
                "a token named {name} exists already; revoke it and choose another name"
            )));
        }
        let head = audit::append(
            &tx,
            actor,
            "token-create",
            &format!("token:{name}"),
            &serde_json::json!({}),
        )?;
        tx.commit(head)?;
        Ok(token)
    }

    /// Revoke the named token `name`.
    pub fn revoke_token(&mut self, name: &str, actor: &str) -> Result<()> {
        let tx = self.begin()?;
        let n = tx.execute(
            "UPDATE tokens SET revoked_ms = ?1 WHERE name = ?2 AND revoked_ms IS NULL",
            params![audit::now_ms(), name],
        )?;
        if n == 0 {
            return Err(Error::Invalid(format!(
                "no token named {name} is in use (see `airssys-wasm token list`)"
            )));
        }
        let head = audit::append(
            &tx,
            actor,
            "token-revoke",
            &format!("token:{name}"),
            &serde_json::json!({}),
        )?;
        tx.commit(head)
    }

    /// Every named token, oldest first.
    pub fn tokens(&self) -> Result<Vec<TokenInfo>> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, created_ms, revoked_ms FROM tokens ORDER BY created_ms, name")?;
        let rows = stmt.query_map([], |r| {
            Ok(TokenInfo {
                name: r.get(0)?,
                created_ms: r.get(1)?,
                revoked_ms: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// The tokens in use: name and sha256 (hex).
    pub fn token_digests(&self) -> Result<Vec<(String, String)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, sha256 FROM tokens WHERE revoked_ms IS NULL")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Record refused control-API requests: `count` since the last record,
    /// the last one's `what`.
    pub fn record_auth_failures(&mut self, count: u64, what: &str) -> Result<()> {
        let tx = self.begin()?;
        let head = audit::append(
            &tx,
            "anonymous",
            "auth-failed",
            "control-api",
            &serde_json::json!({ "count": count, "last": what }),
        )?;
        tx.commit(head)
    }

    /// The trusted keys.
    pub fn trusted(&self) -> Result<Vec<crate::signing::PublicKey>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, key FROM trusted_keys ORDER BY added_ms, id")?;
        let rows = stmt.query_map([], |r| {
            Ok(crate::signing::PublicKey {
                id: r.get(0)?,
                key: r.get(1)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Whether `gc` removed the bytes of `name` `version` (its record
    /// stays, for history).
    pub fn pruned(&self, name: &str, version: &str) -> Result<bool> {
        let pruned: Option<i64> = self.conn.query_row(
            "SELECT pruned_ms FROM versions WHERE name = ?1 AND version = ?2",
            params![name, version],
            |r| r.get(0),
        )?;
        Ok(pruned.is_some())
    }

    /// The database, for the deployment tables beside the registry's.
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// A write transaction that must end with an audit record
    /// ([`RegistryTx::commit`] takes the record's head).
    pub(crate) fn begin(&mut self) -> Result<RegistryTx<'_>> {
        Ok(RegistryTx {
            tx: self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?,
            head: self.head.clone(),
        })
    }

    /// The digest `name` `version` was published with.
    pub fn digest(&self, name: &str, version: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT digest FROM versions WHERE name = ?1 AND version = ?2",
                params![name, version],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The bytes of `name` `version`, checked against their digest.
    pub fn bytes(&self, name: &str, version: &str) -> Result<Vec<u8>> {
        let digest = self
            .digest(name, version)?
            .ok_or_else(|| Error::Invalid(format!("{name} {version} is not published")))?;
        let hex = digest.trim_start_matches("sha256:");
        if self.pruned(name, version)? {
            return Err(Error::Invalid(format!(
                "the bytes of {name} {version} were removed by `gc` (beyond the versions kept); publish it again to use it"
            )));
        }
        let path = self.blobs.join(hex);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        if hex::encode(Sha256::digest(&bytes)) != hex {
            return Err(Error::Invalid(format!(
                "the stored bytes of {name} {version} ({}) do not match their digest: the blob was changed on disk",
                path.display()
            )));
        }
        Ok(bytes)
    }

    /// The published versions of `name` (all components when `None`),
    /// newest first per component.
    pub fn versions(&self, name: Option<&str>) -> Result<Vec<Published>> {
        let mut stmt = self.conn.prepare(
            "SELECT name, version, digest, size FROM versions
             WHERE ?1 IS NULL OR name = ?1 ORDER BY name, published_ms DESC, version DESC",
        )?;
        let rows = stmt.query_map(params![name], |r| {
            Ok(Published {
                name: r.get(0)?,
                version: r.get(1)?,
                digest: r.get(2)?,
                size: u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
                created: false,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Remove what nothing needs: the bytes of versions beyond the newest
    /// `keep` of each component (never a version with an active deployment,
    /// nor the one the active deployment replaced: the rollback target),
    /// blobs no version names, compiled code (under `cache`) of no
    /// remaining version, and the state of generations no active, retired
    /// or canary deployment runs on (left by a failed upgrade). A canary's
    /// version is kept too.
    pub fn gc(&mut self, keep: usize, cache: &Path, actor: &str) -> Result<Collected> {
        let mut out = Collected::default();
        let protected: std::collections::HashSet<(String, String)> = {
            let mut stmt = self.conn.prepare(
                "SELECT name, version FROM deployments WHERE state = 'active'
                 UNION SELECT p.name, p.version FROM deployments a JOIN deployments p ON a.parent = p.id
                 WHERE a.state = 'active'
                 UNION SELECT name, version FROM deployments WHERE state = 'prepared' AND strategy = 'canary'",
            )?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?
        };
        let live: Vec<(String, String, String)> = {
            let mut stmt = self.conn.prepare(
                "SELECT name, version, digest FROM versions WHERE pruned_ms IS NULL
                 ORDER BY name, published_ms DESC, rowid DESC",
            )?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_, _>>()?
        };
        let mut seen: std::collections::HashMap<String, usize> = Default::default();
        let mut prune = Vec::new();
        for (name, version, _) in &live {
            let n = seen.entry(name.clone()).or_default();
            *n += 1;
            if *n > keep && !protected.contains(&(name.clone(), version.clone())) {
                prune.push((name.clone(), version.clone()));
            }
        }
        {
            let tx = self.begin()?;
            for (name, version) in &prune {
                tx.execute(
                    "UPDATE versions SET pruned_ms = strftime('%s','now') * 1000 WHERE name = ?1 AND version = ?2",
                    params![name, version],
                )?;
                out.pruned.push(format!("{name}@{version}"));
            }
            // State generations no deployment that was or may be active
            // runs on (left by an interrupted or failed upgrade). Those of
            // retired deployments stay, even when their bytes are removed:
            // publishing the bytes again makes them a rollback target, and
            // their state cannot be brought back.
            out.state_entries = tx.execute(
                "DELETE FROM state
                 WHERE instr(component, '#') > 0
                   AND substr(component, 1, instr(component, '#') - 1) IN (SELECT name FROM deployments)
                   AND component NOT IN
                     (SELECT name || '#' || generation FROM deployments
                      WHERE state IN ('active', 'retired')
                         OR (state = 'prepared' AND strategy = 'canary'))",
                [],
            )?;
            if !out.pruned.is_empty() || out.state_entries > 0 {
                let head = audit::append(
                    &tx,
                    actor,
                    "gc",
                    "registry",
                    &serde_json::json!({
                        "pruned": out.pruned,
                        "keep": keep,
                        "state_entries": out.state_entries,
                    }),
                )?;
                tx.commit(head)?;
            }
        }
        // What the remaining versions need.
        let needed: std::collections::HashSet<String> = {
            let mut stmt = self
                .conn
                .prepare("SELECT digest FROM versions WHERE pruned_ms IS NULL")?;
            stmt.query_map([], |r| r.get::<_, String>(0))?
                .map(|d| d.map(|d| d.trim_start_matches("sha256:").to_string()))
                .collect::<Result<_, _>>()?
        };
        let mut remove = |path: &Path, out_count: &mut usize| {
            let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            if std::fs::remove_file(path).is_ok() {
                *out_count += 1;
                out.bytes += size;
            }
        };
        let mut blobs = 0;
        for e in std::fs::read_dir(&self.blobs)
            .map_err(|e| Error::io(&self.blobs, e))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if !needed.contains(&name) {
                remove(&e.path(), &mut blobs);
            }
        }
        let mut compiled = 0;
        // Compiled code: one directory per engine, one file per digest.
        if let Ok(engines) = std::fs::read_dir(cache) {
            for engine in engines.flatten().filter(|e| e.path().is_dir()) {
                for e in std::fs::read_dir(engine.path())
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    let file = e.file_name().to_string_lossy().into_owned();
                    if let Some(digest) = file.strip_suffix(".cwasm")
                        && !needed.contains(digest)
                    {
                        remove(&e.path(), &mut compiled);
                    }
                }
            }
        }
        out.blobs = blobs;
        out.compiled = compiled;
        crate::blob::sync_dir(&self.blobs)?;
        Ok(out)
    }

    /// Append audit events the runtime recorded (denials, refusals, limits
    /// that stopped calls) to the trail, in one transaction.
    pub fn record_events(&mut self, events: &[airssys_wasm_runtime::AuditEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let tx = self.begin()?;
        let mut head = None;
        for e in events {
            let decision = serde_json::to_value(e.decision)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| "denied".into());
            let subject = match &e.version {
                Some(v) => format!("{}@{v}", e.component),
                None => e.component.clone(),
            };
            let details = serde_json::json!({
                "capability": e.capability,
                "target": e.target,
                "reason": e.reason,
                "suppressed": e.suppressed,
                "time": audit::ms(e.time),
            });
            head = Some(audit::append(&tx, "host", &decision, &subject, &details)?);
        }
        match head {
            Some(h) => tx.commit(h),
            None => Ok(()),
        }
    }

    /// The audit trail, in order.
    pub fn audit(&self) -> Result<Vec<AuditRecord>> {
        audit::list(&self.conn)
    }

    /// The head of the audit chain kept beside the database.
    pub fn audit_head(&self) -> Result<AuditHead> {
        let text = match std::fs::read_to_string(&self.head) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(&self.head, e)),
        };
        let (seq, hash) = match text.as_deref().map(audit::parse_head) {
            None => (None, None),
            Some(None) => {
                return Err(Error::Invalid(format!(
                    "{} does not read as `SEQ HASH`",
                    self.head.display()
                )));
            }
            Some(Some((seq, hash))) => (Some(seq), Some(hash)),
        };
        Ok(AuditHead {
            path: self.head.clone(),
            seq,
            hash,
        })
    }

    /// Walk the audit chain and compare its end with the head kept beside
    /// the database; the first broken link is the error.
    pub fn verify_audit(&self) -> Result<Verified> {
        let records = audit::list(&self.conn)?;
        let head = std::fs::read_to_string(&self.head)
            .ok()
            .and_then(|t| audit::parse_head(&t));
        audit::verify(&records, head)
    }
}

/// The head of the audit chain as kept beside the database (`audit.head`):
/// record it elsewhere too, and a cut of the trail shows even if the file
/// is cut with it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditHead {
    /// The file.
    pub path: PathBuf,
    /// The last record's sequence number (none before the first record).
    pub seq: Option<i64>,
    /// The last record's hash, hex.
    pub hash: Option<String>,
}

/// A write transaction of the registry: committed with the head of the
/// audit record it appended, which is staged beside the database before the
/// commit and put in place after it.
pub(crate) struct RegistryTx<'a> {
    tx: rusqlite::Transaction<'a>,
    head: PathBuf,
}

impl<'a> std::ops::Deref for RegistryTx<'a> {
    type Target = rusqlite::Transaction<'a>;

    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl RegistryTx<'_> {
    /// Commit, with `head` (from [`audit::append`]) as the trail's new head.
    ///
    /// Both head files are rewritten in place (an fdatasync each, no
    /// directory sync once they exist): `audit.head.next` before the
    /// commit, `audit.head` after it. A crash after the commit leaves the
    /// next head naming the table's end, which `repair_head` copies over; a
    /// crash before leaves the head as it was.
    pub(crate) fn commit(self, head: (i64, [u8; 32])) -> Result<()> {
        let text = audit::format_head(head.0, &head.1);
        crash_point!("tx-before-head");
        write_in_place(&next_head(&self.head), &text)?;
        crash_point!("tx-before-commit");
        self.tx.commit()?;
        crash_point!("tx-after-commit");
        write_in_place(&self.head, &text)?;
        crash_point!("tx-head-written");
        Ok(())
    }
}

/// Where the next head waits for its commit.
fn next_head(head: &Path) -> PathBuf {
    head.with_extension("head.next")
}

fn parent(p: &Path) -> &Path {
    p.parent().unwrap_or(Path::new("."))
}

/// Replace the contents of the small file `path` with `text`, durably: its
/// data synced, and its directory too when the file is new.
fn write_in_place(path: &Path, text: &str) -> Result<()> {
    use std::io::Write as _;
    let size = std::fs::metadata(path).ok().map(|m| m.len());
    let existed = size.is_some();
    // The same size: the data is overwritten and only it is synced.
    let same_size = size == Some(text.len() as u64);
    std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(!same_size)
        .open(path)
        .and_then(|mut f| {
            f.write_all(text.as_bytes())?;
            f.sync_data()
        })
        .map_err(|e| Error::io(path, e))?;
    if !existed {
        crate::blob::sync_dir(parent(path))?;
    }
    Ok(())
}

/// Component names: lowercase letters, digits, `-` and `_`, from a letter.
fn check_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.len() <= 64;
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "`{name}` is not a component name: lowercase letters, digits, `-` and `_`, starting with a letter, at most 64"
        )))
    }
}
