//! IPVS mode: Services as IPVS virtual servers, programmed over generic
//! netlink.

pub mod netlink;
