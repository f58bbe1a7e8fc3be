//! Who is calling, and may they: TLS with optional client certificates
//! (user = CN, groups = O), bearer tokens, and the authorization rule.

mod authz;
mod tls;
mod token;

pub use authz::{Decision, authorize};
pub use tls::{identity_from_cert, server_config};
pub use token::{TokenAuthenticator, constant_time_eq};

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
}

impl Identity {
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// The identity a TLS connection's client certificate proved, if any; put in
/// every request's extensions by the listener.
#[derive(Debug, Clone, Default)]
pub struct PeerIdentity(pub Option<Identity>);
