//! paddock-apiserver: a Kubernetes API server with an embedded SQLite store,
//! and the controllers that make it a control plane.

pub mod controllers;
pub mod defaults;
pub mod openapi;
pub mod patch;
pub mod resources;
pub mod table;
pub mod validation;
