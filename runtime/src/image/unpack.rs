//! Unpacking a layer blob (gzip, zstd or plain tar) into a directory that
//! overlayfs stacks: whiteouts become overlay whiteouts (a 0/0 character
//! device for `.wh.NAME`, the `trusted.overlay.opaque` xattr for
//! `.wh..wh..opq`), and the uncompressed stream is checked against the
//! image's diff id.

use std::ffi::CString;
use std::io::{BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use sha2::{Digest, Sha256};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";

/// What a layer takes on disk once unpacked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LayerUsage {
    pub bytes: u64,
    pub inodes: u64,
}

/// Unpacks `blob` into `dest` (which must not exist yet), verifying that the
/// uncompressed tar hashes to `diff_id` (`sha256:<hex>`).
pub fn unpack(blob: &Path, diff_id: &str, dest: &Path) -> Result<LayerUsage> {
    let file = std::fs::File::open(blob).with_context(|| format!("opening {}", blob.display()))?;
    let mut reader = BufReader::new(file);
    let tar: Box<dyn Read> = match sniff(&mut reader)? {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(reader)?),
        Compression::None => Box::new(reader),
    };
    let mut hashing = HashingReader {
        inner: tar,
        hasher: Sha256::new(),
    };
    std::fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
    let usage = unpack_tar(&mut hashing, dest)?;
    std::io::copy(&mut hashing, &mut std::io::sink())?;
    let actual = format!("sha256:{}", hex::encode(hashing.hasher.finalize()));
    ensure!(
        actual == diff_id,
        "layer content is {actual}, the image says {diff_id}"
    );
    Ok(usage)
}

enum Compression {
    Gzip,
    Zstd,
    None,
}

fn sniff(reader: &mut BufReader<std::fs::File>) -> Result<Compression> {
    use std::io::BufRead;
    let head = reader.fill_buf()?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    })
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

fn unpack_tar(reader: &mut impl Read, dest: &Path) -> Result<LayerUsage> {
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(true);
    archive.set_overwrite(true);
    let mut usage = LayerUsage::default();
    for entry in archive.entries().context("reading the layer tar")? {
        let mut entry = entry.context("reading a layer tar entry")?;
        let path = relative(&entry.path()?)?;
        let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue; // the root directory itself
        };
        let parent = dest.join(path.parent().unwrap_or(Path::new("")));
        usage.inodes += 1;
        if name == OPAQUE_WHITEOUT {
            std::fs::create_dir_all(&parent)?;
            set_xattr(&parent, "trusted.overlay.opaque", b"y")?;
        } else if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            std::fs::create_dir_all(&parent)?;
            whiteout(&parent.join(hidden))?;
        } else {
            usage.bytes += entry.header().size().unwrap_or(0);
            entry
                .unpack_in(dest)
                .with_context(|| format!("unpacking {}", path.display()))?;
        }
    }
    Ok(usage)
}

/// The entry's path made relative, refusing `..`.
fn relative(path: &Path) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                bail!("layer entry {} leaves the layer", path.display())
            }
        }
    }
    Ok(out)
}

fn whiteout(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path)?,
        Ok(_) => std::fs::remove_file(path)?,
        Err(_) => {}
    }
    nix::sys::stat::mknod(
        path,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::empty(),
        nix::sys::stat::makedev(0, 0),
    )
    .with_context(|| format!("creating the whiteout {}", path.display()))?;
    Ok(())
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) -> Result<()> {
    let c_path = CString::new(path.as_os_str().as_bytes())?;
    let c_name = CString::new(name)?;
    // SAFETY: both strings are NUL-terminated and `value` outlives the call.
    let rc = unsafe {
        libc::lsetxattr(
            c_path.as_ptr(),
            c_name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("setting {name} on {}", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::FileTypeExt;

    use super::*;

    fn layer(entries: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, content) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            match content {
                Some(data) => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_size(data.len() as u64);
                    header.set_mode(0o644);
                    header.set_cksum();
                    builder.append_data(&mut header, path, *data).unwrap();
                }
                None => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_size(0);
                    header.set_mode(0o755);
                    header.set_cksum();
                    builder.append_data(&mut header, path, &[][..]).unwrap();
                }
            }
        }
        builder.into_inner().unwrap()
    }

    fn scratch() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("paddock-unpack-{}", crate::state::new_id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn diff_id(tar: &[u8]) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(tar)))
    }

    #[test]
    fn gzip_and_zstd_layers_unpack_to_the_same_tree() -> Result<()> {
        let tar = layer(&[("etc/", None), ("etc/motd", Some(b"hello\n"))]);
        let dir = scratch();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar)?;
        std::fs::write(dir.join("gz"), gz.finish()?)?;
        std::fs::write(dir.join("zst"), zstd::encode_all(&tar[..], 1)?)?;
        for blob in ["gz", "zst"] {
            let dest = dir.join(format!("{blob}.d"));
            let usage = unpack(&dir.join(blob), &diff_id(&tar), &dest)?;
            assert_eq!(std::fs::read_to_string(dest.join("etc/motd"))?, "hello\n");
            assert_eq!(
                usage,
                LayerUsage {
                    bytes: 6,
                    inodes: 2
                }
            );
        }
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    #[test]
    fn whiteouts_become_overlay_whiteouts() -> Result<()> {
        let tar = layer(&[("etc/.wh.motd", Some(b"")), ("var/.wh..wh..opq", Some(b""))]);
        let dir = scratch();
        std::fs::write(dir.join("layer"), &tar)?;
        let dest = dir.join("d");
        unpack(&dir.join("layer"), &diff_id(&tar), &dest)?;
        let motd = std::fs::symlink_metadata(dest.join("etc/motd"))?;
        assert!(motd.file_type().is_char_device());
        let mut value = [0u8; 4];
        let c_path = CString::new(dest.join("var").as_os_str().as_bytes())?;
        let c_name = CString::new("trusted.overlay.opaque")?;
        // SAFETY: valid C strings and a buffer of the given length.
        let n = unsafe {
            libc::lgetxattr(
                c_path.as_ptr(),
                c_name.as_ptr(),
                value.as_mut_ptr().cast(),
                4,
            )
        };
        assert_eq!(&value[..n as usize], b"y");
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    #[test]
    fn a_wrong_diff_id_or_an_escaping_path_is_refused() -> Result<()> {
        let dir = scratch();
        let tar = layer(&[("a", Some(b"x"))]);
        std::fs::write(dir.join("layer"), &tar)?;
        let err = unpack(&dir.join("layer"), "sha256:00", &dir.join("d1")).unwrap_err();
        assert!(
            err.to_string().contains("the image says sha256:00"),
            "{err}"
        );
        assert!(relative(Path::new("../etc/passwd")).is_err());
        assert_eq!(
            relative(Path::new("/etc/./passwd"))?,
            Path::new("etc/passwd")
        );
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
