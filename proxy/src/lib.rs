//! paddock-proxy
