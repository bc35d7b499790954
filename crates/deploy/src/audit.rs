//! The audit trail: append-only, hash-chained, its head kept outside the
//! database.
//!
//! Each record's hash is `sha256(previous hash || encoding)`, the first
//! record's previous hash being 32 zero bytes. The encoding is fixed and
//! versioned, so no serializer upgrade can change what was hashed:
//!
//! | field | bytes |
//! | --- | --- |
//! | schema version (1) | u16, big-endian |
//! | sequence number (from 1) | i64, big-endian |
//! | time, milliseconds since 1970 UTC | i64, big-endian |
//! | actor, action, subject, details | each a u32 big-endian length, then UTF-8 |
//!
//! Triggers refuse `UPDATE` and `DELETE` on the table. The last record's
//! sequence number and hash are also written to `audit.head` beside the
//! database after every commit (and to `audit.head.next`, durably, before
//! it, so a crash between the two is finished at the next open), so cutting
//! records off the end is caught too. Verification walks the chain and
//! reports the first broken link.

use rusqlite::{OptionalExtension, Transaction, params};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// The version of the encoding above.
pub const ENCODING_VERSION: u16 = 1;

/// One record of the trail.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditRecord {
    /// Its place in the chain, from 1.
    pub seq: i64,
    /// Milliseconds since 1970 UTC.
    pub time_ms: i64,
    /// Who did it.
    pub actor: String,
    /// What was done (`publish`, `deploy`, ...).
    pub action: String,
    /// What it was done to (`echo@0.1.0`).
    pub subject: String,
    /// The rest, as JSON text.
    pub details: String,
    /// The previous record's hash, hex.
    pub prev_hash: String,
    /// This record's hash, hex.
    pub hash: String,
}

/// What a successful verification saw.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verified {
    /// How many records chain correctly.
    pub records: i64,
    /// The head's hash, hex (empty for an empty trail).
    pub head: String,
}

pub(crate) const SCHEMA: &str = "
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY,
    time_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    details TEXT NOT NULL,
    prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL
);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
";

/// The encoding of a record (see the module's table).
pub fn encode(seq: i64, time_ms: i64, fields: [&str; 4]) -> Vec<u8> {
    let mut out = Vec::with_capacity(18 + fields.iter().map(|f| 4 + f.len()).sum::<usize>());
    out.extend_from_slice(&ENCODING_VERSION.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&time_ms.to_be_bytes());
    for f in fields {
        // Fields are bounded by what the engine writes; a field over 4 GiB
        // cannot be stored in the first place.
        let len = u32::try_from(f.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(f.as_bytes());
    }
    out
}

/// The hash of a record that follows `prev`.
pub fn chain_hash(prev: &[u8], encoding: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(encoding);
    h.finalize().into()
}

/// Append a record inside `tx`; its sequence number and hash.
pub(crate) fn append(
    tx: &Transaction<'_>,
    actor: &str,
    action: &str,
    subject: &str,
    details: &serde_json::Value,
) -> Result<(i64, [u8; 32])> {
    let last: Option<(i64, Vec<u8>)> = tx
        .query_row(
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (seq, prev) = match last {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, vec![0u8; 32]),
    };
    let time_ms = now_ms();
    let details = details.to_string();
    let encoding = encode(seq, time_ms, [actor, action, subject, &details]);
    let hash = chain_hash(&prev, &encoding);
    tx.execute(
        "INSERT INTO audit (seq, time_ms, actor, action, subject, details, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            seq,
            time_ms,
            actor,
            action,
            subject,
            details,
            prev,
            hash.to_vec()
        ],
    )?;
    Ok((seq, hash))
}

/// Milliseconds since 1970 of `t` (0 before it).
pub(crate) fn ms(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Milliseconds since 1970, now.
pub(crate) fn now_ms() -> i64 {
    ms(std::time::SystemTime::now())
}

/// The head as written in `audit.head`: `SEQ HASH`.
/// `SEQ HASH`, the sequence number zero-padded, so every head has the same
/// length and is rewritten in place without changing the file's size.
pub(crate) fn format_head(seq: i64, hash: &[u8]) -> String {
    format!("{seq:019} {}\n", hex::encode(hash))
}

pub(crate) fn parse_head(text: &str) -> Option<(i64, String)> {
    let (seq, hash) = text.trim().split_once(' ')?;
    Some((seq.parse().ok()?, hash.to_string()))
}

/// Every record, in order.
pub(crate) fn list(conn: &rusqlite::Connection) -> Result<Vec<AuditRecord>> {
    let mut stmt = conn.prepare(
        "SELECT seq, time_ms, actor, action, subject, details, prev_hash, hash
         FROM audit ORDER BY seq",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(AuditRecord {
            seq: r.get(0)?,
            time_ms: r.get(1)?,
            actor: r.get(2)?,
            action: r.get(3)?,
            subject: r.get(4)?,
            details: r.get(5)?,
            prev_hash: hex::encode(r.get::<_, Vec<u8>>(6)?),
            hash: hex::encode(r.get::<_, Vec<u8>>(7)?),
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Walk the chain; then compare its end with the head kept outside.
pub(crate) fn verify(records: &[AuditRecord], head: Option<(i64, String)>) -> Result<Verified> {
    let mut prev = hex::encode([0u8; 32]);
    let broken = |seq: i64, reason: String| Error::AuditBroken { seq, reason };
    for (i, r) in records.iter().enumerate() {
        let expected = i64::try_from(i).unwrap_or(i64::MAX) + 1;
        if r.seq != expected {
            return Err(broken(
                r.seq,
                format!("expected record {expected} here (a record is missing or out of place)"),
            ));
        }
        if r.prev_hash != prev {
            return Err(broken(
                r.seq,
                "it does not follow the record before it".into(),
            ));
        }
        let encoding = encode(
            r.seq,
            r.time_ms,
            [&r.actor, &r.action, &r.subject, &r.details],
        );
        let prev_bytes = hex::decode(&r.prev_hash).unwrap_or_default();
        if hex::encode(chain_hash(&prev_bytes, &encoding)) != r.hash {
            return Err(broken(
                r.seq,
                "its contents do not match its hash (edited)".into(),
            ));
        }
        prev = r.hash.clone();
    }
    let last = records.last().map(|r| (r.seq, r.hash.clone()));
    match (last, head) {
        (None, None) => Ok(Verified {
            records: 0,
            head: String::new(),
        }),
        (Some((seq, hash)), Some((hseq, hhash))) if seq == hseq && hash == hhash => Ok(Verified {
            records: seq,
            head: hash,
        }),
        (Some((seq, _)), Some((hseq, _))) if seq < hseq => Err(broken(
            seq + 1,
            format!(
                "the head says {hseq} records, the table holds {seq} (records were cut off the end)"
            ),
        )),
        (_, None) => Err(broken(0, "audit.head is missing".into())),
        (None, Some((hseq, _))) => Err(broken(
            1,
            format!("the head says {hseq} records, the table holds none"),
        )),
        (Some((seq, _)), Some((hseq, _))) => Err(broken(
            seq.min(hseq),
            "the chain does not end in the head kept beside the database (rewritten)".into(),
        )),
    }
}
