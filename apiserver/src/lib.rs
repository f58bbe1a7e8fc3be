//! paddock-apiserver: a Kubernetes API server with an embedded SQLite store,
//! and the controllers that make it a control plane.
//!
//! - `server`: `Server`, started from a `Config`: the pieces below wired up.
//! - `storage`: the revision log (SQLite), current-state index, watches.
//! - `registry`: what each verb means for stored objects (strategies,
//!   graceful deletion, finalizers, allocation, subresources, lifecycle).
//! - `http`: routing, discovery, handlers, watch streams, negotiation.
//! - `auth`, `pki`: TLS, client certs and tokens, the CA and kubeconfigs.
//! - `alloc`: ClusterIP and NodePort allocation.
//! - `resources`: the catalogue of served resources.
//! - `validation`, `defaults`, `table`, `patch`, `openapi`: upstream's API
//!   semantics for the served kinds.
//! - `protobuf`: Kubernetes protobuf request bodies, decoded into JSON.

pub mod alloc;
pub mod auth;
pub mod config;
pub mod controllers;
pub mod defaults;
pub mod http;
pub mod openapi;
pub mod patch;
pub mod pki;
pub mod protobuf;
pub mod registry;
pub mod resources;
mod server;
pub mod shutdown;
pub mod status;
pub mod storage;
pub mod table;
pub mod validation;

pub use config::{Compaction, Config};
pub use server::Server;
