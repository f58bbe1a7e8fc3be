//! Authorization: the admin group and the nodes may do everything; any
//! other authenticated user is refused (an RBAC authorizer can replace this).

use super::Identity;
use crate::pki::{MASTERS, NODES};

#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
}

pub fn authorize(identity: &Identity) -> Decision {
    if identity.in_group(MASTERS) || identity.in_group(NODES) {
        Decision::Allow
    } else {
        Decision::Deny
    }
}
