//! On-disk state: JSON records written atomically (write, fsync, rename), so
//! a crash leaves either the old record or the new one.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Writes `value` as JSON to `path` through a temporary file and a rename.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    serde_json::to_writer(&mut file, value)?;
    file.flush()?;
    file.sync_data()?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// Reads the JSON record at `path`; `None` when there is none.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(
            serde_json::from_slice(&bytes)
                .with_context(|| format!("parsing {}", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// A new random object id: 64 hex digits, like containerd's.
pub fn new_id() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// Nanoseconds since the Unix epoch, as CRI timestamps are.
pub fn now_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_a_missing_one_is_none() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("paddock-state-{}", new_id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("r.json");
        assert_eq!(read_json::<Vec<u32>>(&path)?, None);
        write_json(&path, &vec![1u32, 2])?;
        assert_eq!(read_json::<Vec<u32>>(&path)?, Some(vec![1, 2]));
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
