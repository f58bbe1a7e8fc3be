//! paddock-proxy

pub mod ipvs;
