//! Leader election per load-balancer IP through `coordination.k8s.io`
//! Leases, as client-go does it: the holder renews its lease; another node
//! takes over once the lease has gone unrenewed for its duration, timed by
//! its own clock from when it last saw the lease change (so clocks need not
//! agree); every write is conditional on the version read, so one node
//! wins each race.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;

pub const LEASE_NAMESPACE: &str = "kube-system";

/// The Lease that elects the announcer of `ip`.
pub fn lease_name(ip: Ipv4Addr) -> String {
    format!("paddock-lb-{}", ip.to_string().replace('.', "-"))
}

/// What to do with a lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nobody has made it yet: make it, held by this node.
    Create,
    /// This node holds it: renew it.
    Renew,
    /// It is free or expired: take it.
    TakeOver,
    /// This node holds it but may not (not Ready): give it up.
    Release,
    /// Another node holds it.
    Follow,
}

/// The decision for a lease held by `holder` (None: no lease at all; Some(""):
/// released).
pub fn decide(holder: Option<&str>, me: &str, eligible: bool, expired: bool) -> Decision {
    match holder {
        None if eligible => Decision::Create,
        None => Decision::Follow,
        Some(h) if h == me && eligible => Decision::Renew,
        Some(h) if h == me => Decision::Release,
        Some(h) if (h.is_empty() || expired) && eligible => Decision::TakeOver,
        Some(_) => Decision::Follow,
    }
}

/// A lease's holder and renew time as last seen, and when they were first
/// seen like that.
struct Observed {
    record: (Option<String>, Option<MicroTime>),
    since: Instant,
}

pub struct Elector {
    api: Api<Lease>,
    me: String,
    duration: Duration,
    observed: HashMap<String, Observed>,
}

impl Elector {
    pub fn new(client: kube::Client, me: &str, duration: Duration) -> Elector {
        Elector {
            api: Api::namespaced(client, LEASE_NAMESPACE),
            me: me.to_string(),
            duration,
            observed: HashMap::new(),
        }
    }

    /// Contends for `ip`'s lease; whether this node holds it afterwards.
    pub async fn contend(&mut self, ip: Ipv4Addr, eligible: bool) -> Result<bool> {
        let name = lease_name(ip);
        let lease = self
            .api
            .get_opt(&name)
            .await
            .with_context(|| format!("reading lease {LEASE_NAMESPACE}/{name}"))?;
        let holder = lease.as_ref().map(|l| {
            l.spec
                .as_ref()
                .and_then(|s| s.holder_identity.clone())
                .unwrap_or_default()
        });
        let expired = lease.as_ref().is_some_and(|l| self.expired(&name, l));
        match decide(holder.as_deref(), &self.me, eligible, expired) {
            Decision::Create => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some(LEASE_NAMESPACE.into()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.held(None)),
                };
                self.write(self.api.create(&PostParams::default(), &lease).await, &name)
            }
            Decision::Renew | Decision::TakeOver => {
                let Some(mut lease) = lease else {
                    return Ok(false);
                };
                let old = lease.spec.take().unwrap_or_default();
                lease.spec = Some(self.held(Some(old)));
                self.write(
                    self.api
                        .replace(&name, &PostParams::default(), &lease)
                        .await,
                    &name,
                )
            }
            Decision::Release => {
                self.release(ip).await?;
                Ok(false)
            }
            Decision::Follow => Ok(false),
        }
    }

    /// Gives `ip`'s lease up if this node holds it, so another node takes
    /// over at once.
    pub async fn release(&mut self, ip: Ipv4Addr) -> Result<()> {
        let name = lease_name(ip);
        let Some(mut lease) = self.api.get_opt(&name).await? else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.me.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        self.write(
            self.api
                .replace(&name, &PostParams::default(), &lease)
                .await,
            &name,
        )?;
        Ok(())
    }

    /// The spec of a lease this node holds from now, following `old`.
    fn held(&self, old: Option<LeaseSpec>) -> LeaseSpec {
        let now = MicroTime(Timestamp::now());
        let taken_over = old
            .as_ref()
            .is_none_or(|o| o.holder_identity.as_deref() != Some(self.me.as_str()));
        let old = old.unwrap_or_default();
        LeaseSpec {
            holder_identity: Some(self.me.clone()),
            lease_duration_seconds: Some(self.duration.as_secs().try_into().unwrap_or(i32::MAX)),
            acquire_time: if taken_over {
                Some(now.clone())
            } else {
                old.acquire_time.clone()
            },
            renew_time: Some(now),
            lease_transitions: Some(
                old.lease_transitions.unwrap_or(0)
                    + i32::from(taken_over && old.holder_identity.is_some()),
            ),
            ..old
        }
    }

    /// Whether `lease` has gone unrenewed for its duration, by this node's
    /// clock.
    fn expired(&mut self, name: &str, lease: &Lease) -> bool {
        let spec = lease.spec.as_ref();
        let record = (
            spec.and_then(|s| s.holder_identity.clone()),
            spec.and_then(|s| s.renew_time.clone()),
        );
        let duration = spec
            .and_then(|s| s.lease_duration_seconds)
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.duration, Duration::from_secs);
        let observed = self
            .observed
            .entry(name.to_string())
            .or_insert_with(|| Observed {
                record: record.clone(),
                since: Instant::now(),
            });
        if observed.record != record {
            *observed = Observed {
                record,
                since: Instant::now(),
            };
        }
        observed.since.elapsed() > duration
    }

    /// Whether a write went through; losing a race (409) is not an error.
    fn write(&mut self, result: kube::Result<Lease>, name: &str) -> Result<bool> {
        match result {
            Ok(lease) => {
                let spec = lease.spec.as_ref();
                self.observed.insert(
                    name.to_string(),
                    Observed {
                        record: (
                            spec.and_then(|s| s.holder_identity.clone()),
                            spec.and_then(|s| s.renew_time.clone()),
                        ),
                        since: Instant::now(),
                    },
                );
                Ok(spec.and_then(|s| s.holder_identity.as_deref()) == Some(self.me.as_str()))
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(e).with_context(|| format!("writing lease {LEASE_NAMESPACE}/{name}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_names_are_valid_object_names() {
        assert_eq!(
            lease_name(Ipv4Addr::new(192, 168, 56, 200)),
            "paddock-lb-192-168-56-200"
        );
    }

    #[test]
    fn decisions() {
        use Decision::*;
        assert_eq!(decide(None, "a", true, false), Create);
        assert_eq!(decide(None, "a", false, false), Follow);
        assert_eq!(decide(Some("a"), "a", true, false), Renew);
        assert_eq!(decide(Some("a"), "a", false, false), Release);
        assert_eq!(decide(Some(""), "a", true, false), TakeOver);
        assert_eq!(decide(Some("b"), "a", true, false), Follow);
        assert_eq!(decide(Some("b"), "a", true, true), TakeOver);
        assert_eq!(decide(Some("b"), "a", false, true), Follow);
    }
}
