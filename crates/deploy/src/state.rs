//! Components' state, kept in the registry database: the runtime's
//! [`StateBackend`], one namespace per component and state generation
//! (`NAME#GENERATION`, see [`crate::Deployment::generation`]).

use std::sync::Mutex;

use airssys_wasm_runtime::StateBackend;
use rusqlite::{Connection, TransactionBehavior, params};

use crate::error::Result;
use crate::state_dir::StateDir;

/// The state store of a state directory.
#[derive(Debug)]
pub struct SqliteState {
    conn: Mutex<Connection>,
}

impl SqliteState {
    /// Open the state store of `dir` (its registry must have been opened
    /// once, which creates the table).
    pub fn open(dir: &StateDir) -> Result<Self> {
        let conn = Connection::open(dir.database())?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        wait_briefly_when_busy(&conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// While another connection of this process writes (calls' state commits
/// and the registry's transactions share the database), retry every 100 to
/// 1000 microseconds for up to 5 s. SQLite's own busy timeout sleeps up to
/// 100 ms between tries, so a writer could starve behind a stream of
/// short commits (an upgrade waited seconds behind calls that each commit).
pub(crate) fn wait_briefly_when_busy(conn: &Connection) -> Result<()> {
    fn retry(attempt: i32) -> bool {
        let attempt = u64::try_from(attempt).unwrap_or(0);
        // 100 us, 200 us, ... capped at 1 ms: about 5 s over 5,000 tries.
        if attempt >= 5_000 {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_micros(
            (attempt + 1).min(10) * 100,
        ));
        true
    }
    conn.busy_handler(Some(retry))?;
    Ok(())
}

impl StateBackend for SqliteState {
    fn load(&self, namespace: &str) -> Result<Vec<(String, String, Vec<u8>)>, String> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT bucket, key, value FROM state WHERE component = ?1")
            .map_err(|e| e.to_string())?;
        let rows = stmt
            .query_map(params![namespace], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(|e| e.to_string())?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())
    }

    fn commit(
        &self,
        namespace: &str,
        writes: &[(String, String, Option<Vec<u8>>)],
    ) -> Result<(), String> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| e.to_string())?;
        for (bucket, key, value) in writes {
            match value {
                Some(v) => tx.execute(
                    "INSERT INTO state (component, bucket, key, value) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (component, bucket, key) DO UPDATE SET value = excluded.value",
                    params![namespace, bucket, key, v],
                ),
                None => tx.execute(
                    "DELETE FROM state WHERE component = ?1 AND bucket = ?2 AND key = ?3",
                    params![namespace, bucket, key],
                ),
            }
            .map_err(|e| e.to_string())?;
        }
        tx.commit().map_err(|e| e.to_string())
    }
}
