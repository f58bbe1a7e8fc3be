//! The user a container runs as: a uid/gid or names resolved in the image's
//! own `/etc/passwd` and `/etc/group`, plus the groups it belongs to there.

use std::path::Path;

use crate::error::{Error, Result};

#[derive(Debug, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Resolves `user` (`name`, `uid`, `name:group`, `uid:gid`...) against the
/// files under `rootfs`. An unknown numeric uid is fine (gid 0, as Docker
/// does); an unknown name is an error.
pub fn resolve(rootfs: &Path, user: &str, group: Option<u32>) -> Result<User> {
    let passwd = read_passwd(rootfs);
    let groups = read_group(rootfs);
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let (uid, name, mut gid) = match user_part.parse::<u32>() {
        Ok(uid) => {
            let entry = passwd.iter().find(|e| e.uid == uid);
            (
                uid,
                entry.map(|e| e.name.clone()),
                entry.map_or(0, |e| e.gid),
            )
        }
        Err(_) => {
            let entry = passwd.iter().find(|e| e.name == user_part).ok_or_else(|| {
                Error::invalid(format!(
                    "user {user_part:?} is not in the image's /etc/passwd"
                ))
            })?;
            (entry.uid, Some(entry.name.clone()), entry.gid)
        }
    };
    if let Some(g) = group_part.filter(|g| !g.is_empty()) {
        gid = match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => groups
                .iter()
                .find(|e| e.name == g)
                .map(|e| e.gid)
                .ok_or_else(|| {
                    Error::invalid(format!("group {g:?} is not in the image's /etc/group"))
                })?,
        };
    }
    if let Some(g) = group {
        gid = g;
    }
    let additional_gids = match &name {
        Some(name) => groups
            .iter()
            .filter(|g| g.members.contains(name) && g.gid != gid)
            .map(|g| g.gid)
            .collect(),
        None => Vec::new(),
    };
    Ok(User {
        uid,
        gid,
        additional_gids,
    })
}

fn read_passwd(rootfs: &Path) -> Vec<PasswdEntry> {
    read_colon_file(&rootfs.join("etc/passwd"))
        .into_iter()
        .filter_map(|f| {
            Some(PasswdEntry {
                name: f.first()?.clone(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
            })
        })
        .collect()
}

fn read_group(rootfs: &Path) -> Vec<GroupEntry> {
    read_colon_file(&rootfs.join("etc/group"))
        .into_iter()
        .filter_map(|f| {
            Some(GroupEntry {
                name: f.first()?.clone(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// The lines of a colon-separated file (passwd, group), split; none if absent.
fn read_colon_file(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| l.split(':').map(str::to_string).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("paddock-user-{}", crate::state::new_id()));
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        std::fs::write(
            dir.join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nwww-data:x:33:33::/var/www:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("etc/group"),
            "root:x:0:\nwww-data:x:33:\nadm:x:4:www-data\n",
        )
        .unwrap();
        dir
    }

    #[test]
    fn names_and_numbers_resolve_with_groups() -> Result<()> {
        let root = rootfs();
        assert_eq!(
            resolve(&root, "", None)?,
            User {
                uid: 0,
                gid: 0,
                additional_gids: vec![]
            }
        );
        assert_eq!(
            resolve(&root, "www-data", None)?,
            User {
                uid: 33,
                gid: 33,
                additional_gids: vec![4]
            }
        );
        assert_eq!(
            resolve(&root, "33:adm", None)?,
            User {
                uid: 33,
                gid: 4,
                additional_gids: vec![]
            }
        );
        assert_eq!(
            resolve(&root, "1234", Some(5))?,
            User {
                uid: 1234,
                gid: 5,
                additional_gids: vec![]
            }
        );
        assert!(matches!(
            resolve(&root, "nobody", None),
            Err(Error::InvalidArgument(_))
        ));
        std::fs::remove_dir_all(&root)?;
        Ok(())
    }
}
