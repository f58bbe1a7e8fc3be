//! The embedded store: a revision log in one SQLite file (WAL,
//! `synchronous=FULL`, so an acknowledged write survives a crash or power
//! loss). One writer thread owns the connection and commits the writes that
//! queue up while it is busy in one transaction, so concurrent clients share
//! an fsync.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde_json::Value;
use tokio::sync::oneshot;

use super::cache::{Cache, RING_CAPACITY};
use super::watch::Watcher;
use super::{
    Event, EventStream, EventType, Indexer, Object, Op, Revision, Snapshot, Store, StoreError,
    Write,
};

/// The most writes committed in one transaction.
const MAX_BATCH: usize = 512;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log (
    rev   INTEGER PRIMARY KEY,
    key   TEXT    NOT NULL,
    op    INTEGER NOT NULL,  -- 0 create, 1 update, 2 delete
    ts    INTEGER NOT NULL,  -- unix seconds of the write
    value BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS log_key_rev ON log (key, rev);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
";

const OP_CREATE: i64 = 0;
const OP_UPDATE: i64 = 1;
const OP_DELETE: i64 = 2;

pub struct SqliteStore {
    cache: Arc<Cache>,
    path: Arc<Path>,
    indexer: Indexer,
    requests: mpsc::Sender<Request>,
}

enum Request {
    Write(Write, oneshot::Sender<Result<Arc<Object>, StoreError>>),
    Compact(Duration, oneshot::Sender<Result<Revision, StoreError>>),
}

impl SqliteStore {
    /// Opens (or creates) the database at `path` and loads the current state.
    pub fn open(path: &Path, indexer: Indexer) -> Result<SqliteStore> {
        Self::open_with_ring(path, indexer, RING_CAPACITY)
    }

    /// As `open`, keeping `ring_capacity` recent events in memory.
    pub(crate) fn open_with_ring(
        path: &Path,
        indexer: Indexer,
        ring_capacity: usize,
    ) -> Result<SqliteStore> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(Duration::from_secs(30))?;
        conn.execute_batch(SCHEMA)
            .context("creating the storage schema")?;
        let (objects, revision, compacted) = load(&conn, indexer)?;
        let cache = Arc::new(Cache::new(objects, revision, compacted, ring_capacity));
        let (requests, queue) = mpsc::channel();
        let writer = Writer {
            conn,
            cache: cache.clone(),
            indexer,
            next: revision + 1,
        };
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer.run(queue))
            .context("starting the store writer")?;
        Ok(SqliteStore {
            cache,
            path: Arc::from(path),
            indexer,
            requests,
        })
    }

    fn send<T: Send + 'static>(
        &self,
        request: Request,
        reply: oneshot::Receiver<Result<T, StoreError>>,
    ) -> BoxFuture<'static, Result<T, StoreError>> {
        let sent = self.requests.send(request).is_ok();
        async move {
            if !sent {
                return Err(anyhow::anyhow!("the store writer has stopped").into());
            }
            reply
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the store writer has stopped").into()))
        }
        .boxed()
    }
}

impl Store for SqliteStore {
    fn revision(&self) -> Revision {
        self.cache.revision()
    }

    fn compacted(&self) -> Revision {
        self.cache.compacted()
    }

    fn get(&self, key: &str) -> Option<Arc<Object>> {
        self.cache.get(key)
    }

    fn list(&self, prefix: &str, start_after: Option<&str>) -> Snapshot {
        self.cache.list(prefix, start_after)
    }

    fn write(&self, write: Write) -> BoxFuture<'static, Result<Arc<Object>, StoreError>> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Write(write, tx), rx)
    }

    fn watch(&self, prefix: &str, from: Revision) -> Result<EventStream, StoreError> {
        let compacted = self.cache.compacted();
        if from < compacted {
            return Err(StoreError::Compacted {
                requested: from,
                compacted,
            });
        }
        let log = LogReader {
            path: self.path.clone(),
            indexer: self.indexer,
        };
        Ok(Watcher::new(self.cache.clone(), log, prefix.to_string(), from).into_stream())
    }

    fn compact(&self, retention: Duration) -> BoxFuture<'static, Result<Revision, StoreError>> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Compact(retention, tx), rx)
    }
}

/// Reads the current state: the newest row of every key not deleted, the
/// log's last revision and the compaction point.
fn load(conn: &Connection, indexer: Indexer) -> Result<(Vec<Arc<Object>>, Revision, Revision)> {
    let compacted: Revision = conn
        .query_row("SELECT value FROM meta WHERE name = 'compacted'", [], |r| {
            r.get(0)
        })
        .optional()?
        .unwrap_or(0);
    let last: Revision =
        conn.query_row("SELECT COALESCE(MAX(rev), 0) FROM log", [], |r| r.get(0))?;
    let mut stmt = conn.prepare(
        "SELECT l.key, l.rev, l.value FROM log l
         WHERE l.op != 2 AND l.rev = (SELECT MAX(rev) FROM log n WHERE n.key = l.key)",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Revision>(1)?,
            r.get::<_, Vec<u8>>(2)?,
        ))
    })?;
    let mut objects = Vec::new();
    for row in rows {
        let (key, revision, value) = row?;
        let parsed: Value = serde_json::from_slice(&value)
            .with_context(|| format!("stored object {key} at revision {revision} is not JSON"))?;
        objects.push(Arc::new(Object {
            attrs: indexer(&key, &parsed),
            key: Arc::from(key),
            revision,
            value: Bytes::from(value),
        }));
    }
    Ok((objects, last.max(compacted), compacted))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

struct Writer {
    conn: Connection,
    cache: Arc<Cache>,
    indexer: Indexer,
    next: Revision,
}

type Reply = oneshot::Sender<Result<Arc<Object>, StoreError>>;
type Staged = (Vec<Result<Arc<Object>, StoreError>>, Vec<Arc<Event>>);

impl Writer {
    fn run(mut self, queue: mpsc::Receiver<Request>) {
        let mut batch = Vec::new();
        while let Ok(first) = queue.recv() {
            let mut pending = Some(first);
            while let Some(request) = pending.take() {
                match request {
                    Request::Write(write, reply) => batch.push((write, reply)),
                    Request::Compact(retention, reply) => {
                        self.commit(std::mem::take(&mut batch));
                        let _ = reply.send(self.compact(retention).map_err(StoreError::from));
                    }
                }
                if batch.len() < MAX_BATCH {
                    pending = queue.try_recv().ok();
                }
            }
            self.commit(std::mem::take(&mut batch));
        }
    }

    /// Commits a batch in one transaction, then publishes its events and
    /// answers each writer.
    fn commit(&mut self, batch: Vec<(Write, Reply)>) {
        if batch.is_empty() {
            return;
        }
        let (writes, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let first = self.next;
        match self.stage(writes) {
            Ok((results, events)) => {
                self.cache.apply(events);
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!("storage commit failed: {e:#}");
                self.next = first;
                for reply in replies {
                    let _ = reply.send(Err(anyhow::anyhow!("commit failed: {e:#}").into()));
                }
            }
        }
    }

    fn stage(&mut self, writes: Vec<Write>) -> Result<Staged> {
        let tx = self.conn.transaction()?;
        let mut results = Vec::with_capacity(writes.len());
        let mut events = Vec::with_capacity(writes.len());
        // Writes earlier in this batch, not yet visible in the cache.
        let mut staged: HashMap<String, Option<Arc<Object>>> = HashMap::new();
        let ts = unix_now();
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO log (rev, key, op, ts, value) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for write in writes {
                let current = match staged.get(&write.key) {
                    Some(staged) => staged.clone(),
                    None => self.cache.get(&write.key),
                };
                let (kind, op, mut value) = match check(&write.key, current.as_ref(), write.op) {
                    Ok(checked) => checked,
                    Err(e) => {
                        results.push(Err(e));
                        continue;
                    }
                };
                let revision = self.next;
                set_resource_version(&mut value, revision);
                let bytes = serde_json::to_vec(&value).context("serializing an object")?;
                insert.execute(params![revision, write.key, op, ts, bytes])?;
                self.next += 1;
                let object = Arc::new(Object {
                    attrs: (self.indexer)(&write.key, &value),
                    key: Arc::from(write.key.as_str()),
                    revision,
                    value: Bytes::from(bytes),
                });
                let after = (kind != EventType::Deleted).then(|| object.clone());
                staged.insert(write.key, after);
                events.push(Arc::new(Event {
                    kind,
                    object: object.clone(),
                    prev: current,
                }));
                results.push(Ok(object));
            }
        }
        tx.commit()?;
        Ok((results, events))
    }

    fn compact(&mut self, retention: Duration) -> Result<Revision> {
        let cutoff = unix_now() - retention.as_secs() as i64;
        let target: Option<Revision> =
            self.conn
                .query_row("SELECT MAX(rev) FROM log WHERE ts < ?1", [cutoff], |r| {
                    r.get(0)
                })?;
        let Some(target) = target else {
            return Ok(self.cache.compacted());
        };
        let tx = self.conn.transaction()?;
        let removed = tx.execute(
            "DELETE FROM log WHERE rev <= ?1 AND (op = 2 OR EXISTS
                (SELECT 1 FROM log n WHERE n.key = log.key AND n.rev > log.rev))",
            [target],
        )?;
        tx.execute(
            "INSERT INTO meta (name, value) VALUES ('compacted', ?1)
             ON CONFLICT (name) DO UPDATE SET value = MAX(value, excluded.value)",
            [target],
        )?;
        tx.commit()?;
        self.cache.set_compacted(target);
        if removed > 0 {
            self.conn
                .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
                .context("checkpointing the log")?;
        }
        tracing::debug!(revision = target, removed, "compacted the revision log");
        Ok(target)
    }
}

/// Checks a write's precondition against the key's current object.
fn check(
    key: &str,
    current: Option<&Arc<Object>>,
    op: Op,
) -> Result<(EventType, i64, Value), StoreError> {
    let conflict = |current: &Arc<Object>| StoreError::Conflict {
        key: key.to_string(),
        current: current.revision,
    };
    match (op, current) {
        (Op::Create(value), None) => Ok((EventType::Added, OP_CREATE, value)),
        (Op::Create(_), Some(_)) => Err(StoreError::AlreadyExists(key.to_string())),
        (Op::Update { .. } | Op::Delete { .. }, None) => Err(StoreError::NotFound(key.to_string())),
        (Op::Update { value, expect }, Some(current)) if current.revision == expect => {
            Ok((EventType::Modified, OP_UPDATE, value))
        }
        (Op::Delete { value, expect }, Some(current)) if current.revision == expect => {
            Ok((EventType::Deleted, OP_DELETE, value))
        }
        (Op::Update { .. } | Op::Delete { .. }, Some(current)) => Err(conflict(current)),
    }
}

fn set_resource_version(value: &mut Value, revision: Revision) {
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert(
            "resourceVersion".into(),
            Value::String(revision.to_string()),
        );
    }
}

/// Reads old events back from the log for watches behind the ring.
#[derive(Clone)]
pub(super) struct LogReader {
    path: Arc<Path>,
    indexer: Indexer,
}

impl LogReader {
    /// Up to `limit` events under `prefix` in `(after, through]`, in order.
    pub fn read(
        &self,
        prefix: &str,
        after: Revision,
        through: Revision,
        limit: usize,
    ) -> Result<Vec<Arc<Event>>> {
        let path: PathBuf = self.path.to_path_buf();
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("opening {}", path.display()))?;
        conn.busy_timeout(Duration::from_secs(30))?;
        let mut rows = conn.prepare(
            "SELECT rev, key, op, value FROM log
             WHERE rev > ?1 AND rev <= ?2 AND key >= ?3 AND key < ?4 ORDER BY rev LIMIT ?5",
        )?;
        let mut previous = conn.prepare(
            "SELECT rev, value FROM log WHERE key = ?1 AND rev < ?2 ORDER BY rev DESC LIMIT 1",
        )?;
        let end = prefix_end(prefix);
        let found = rows
            .query_map(params![after, through, prefix, end, limit as i64], |r| {
                Ok((
                    r.get::<_, Revision>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut events = Vec::with_capacity(found.len());
        for (revision, key, op, value) in found {
            let prev = previous
                .query_row(params![key, revision], |r| {
                    Ok((r.get::<_, Revision>(0)?, r.get::<_, Vec<u8>>(1)?))
                })
                .optional()?
                .map(|(rev, value)| self.object(&key, rev, value))
                .transpose()?;
            let kind = match op {
                OP_CREATE => EventType::Added,
                OP_DELETE => EventType::Deleted,
                _ => EventType::Modified,
            };
            events.push(Arc::new(Event {
                kind,
                object: self.object(&key, revision, value)?,
                prev,
            }));
        }
        Ok(events)
    }

    fn object(&self, key: &str, revision: Revision, value: Vec<u8>) -> Result<Arc<Object>> {
        let parsed: Value = serde_json::from_slice(&value)
            .with_context(|| format!("stored object {key} at revision {revision} is not JSON"))?;
        Ok(Arc::new(Object {
            attrs: (self.indexer)(key, &parsed),
            key: Arc::from(key),
            revision,
            value: Bytes::from(value),
        }))
    }
}

/// The smallest string greater than every string starting with `prefix`.
fn prefix_end(prefix: &str) -> String {
    let mut bytes = prefix.as_bytes().to_vec();
    while let Some(last) = bytes.pop() {
        if last < 0x7f {
            bytes.push(last + 1);
            return String::from_utf8(bytes).unwrap_or_else(|_| "\u{10ffff}".into());
        }
    }
    "\u{10ffff}".into()
}
