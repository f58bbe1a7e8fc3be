//! Bearer tokens the cluster minted, each standing for an identity.

use std::collections::HashMap;
use std::sync::RwLock;

use super::Identity;

/// Known bearer tokens. Lookups compare the presented token with each known
/// one in constant time, so a timing side channel reveals nothing.
#[derive(Default)]
pub struct TokenAuthenticator {
    tokens: RwLock<HashMap<String, Identity>>,
}

impl TokenAuthenticator {
    pub fn add(&self, token: &str, identity: Identity) {
        self.tokens
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token.to_string(), identity);
    }

    pub fn authenticate(&self, presented: &str) -> Option<Identity> {
        let tokens = self.tokens.read().unwrap_or_else(|e| e.into_inner());
        let mut found = None;
        for (token, identity) in tokens.iter() {
            if constant_time_eq(token.as_bytes(), presented.as_bytes()) {
                found = Some(identity.clone());
            }
        }
        found
    }
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
