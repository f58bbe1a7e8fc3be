//! The join token: `K10<sha256 of the CA PEM>::server:<secret>` (k3s's
//! shape). An agent that holds it can check it talks to the right server
//! (the hash pins the CA served at `/cacerts`) and prove it may join.

use std::path::Path;

use anyhow::{Context, Result, bail};
use rand::Rng;
use sha2::{Digest, Sha256};

use super::write_private;

#[derive(Clone)]
pub struct JoinToken {
    full: String,
}

impl JoinToken {
    /// The token for `ca_pem`: its secret is `secret` if given (either bare
    /// or as a whole token, whose CA hash must then match), else the one kept
    /// in `path`, else a new random one. The token is written to `path`.
    pub fn load_or_create(path: &Path, ca_pem: &str, secret: Option<&str>) -> Result<JoinToken> {
        let hash = hex::encode(Sha256::digest(ca_pem.as_bytes()));
        let secret = match secret {
            Some(given) => match parse(given) {
                Some((given_hash, secret)) if given_hash == hash => secret.to_string(),
                Some(_) => bail!("the given token was made for another cluster CA"),
                None => given.to_string(),
            },
            None => match std::fs::read_to_string(path) {
                Ok(kept) => match parse(kept.trim()) {
                    Some((_, secret)) => secret.to_string(),
                    None => bail!("{} does not hold a join token", path.display()),
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    hex::encode(rand::rng().random::<[u8; 16]>())
                }
                Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
            },
        };
        if secret.is_empty() || secret.contains(char::is_whitespace) {
            bail!("a token secret must be non-empty and without spaces");
        }
        let token = JoinToken {
            full: format!("K10{hash}::server:{secret}"),
        };
        write_private(path, &format!("{}\n", token.full))?;
        Ok(token)
    }

    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// Whether `presented` is this token, compared in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        crate::auth::constant_time_eq(self.full.as_bytes(), presented.as_bytes())
    }
}

/// Splits `K10<hash>::server:<secret>` into hash and secret.
fn parse(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix("K10")?;
    let (hash, secret) = rest.split_once("::")?;
    let secret = secret.split_once(':').map_or(secret, |(_, s)| s);
    Some((hash, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_pins_the_ca_and_keeps_its_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let made = JoinToken::load_or_create(&path, "CA", None).unwrap();
        let hash = hex::encode(Sha256::digest(b"CA"));
        assert!(made.as_str().starts_with(&format!("K10{hash}::server:")));
        let again = JoinToken::load_or_create(&path, "CA", None).unwrap();
        assert_eq!(made.as_str(), again.as_str());
        assert!(made.matches(again.as_str()));
        assert!(!made.matches("K10"));
    }

    #[test]
    fn given_secret_bare_or_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let bare = JoinToken::load_or_create(&path, "CA", Some("s3cret")).unwrap();
        assert!(bare.as_str().ends_with("::server:s3cret"));
        let whole = JoinToken::load_or_create(&path, "CA", Some(bare.as_str())).unwrap();
        assert_eq!(whole.as_str(), bare.as_str());
        assert!(JoinToken::load_or_create(&path, "other CA", Some(bare.as_str())).is_err());
    }
}
