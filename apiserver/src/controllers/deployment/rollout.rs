//! Rollout arithmetic, pure: how far a RollingUpdate may surge and dip, how
//! many replicas the new ReplicaSet gets next, which old ReplicaSets shrink
//! by how much, and how a resize is shared among ReplicaSets mid-rollout.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// One ReplicaSet's size: wanted (`spec.replicas`) and available pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub wanted: i32,
    pub available: i32,
}

/// `value` (an int, or a percent of `total`) as a count; percents round up
/// for surge and down for unavailability, as upstream.
pub fn scaled_value(
    value: Option<&IntOrString>,
    total: i32,
    round_up: bool,
) -> Result<i32, String> {
    match value {
        None => Ok(0),
        Some(IntOrString::Int(n)) => Ok(*n),
        Some(IntOrString::String(s)) => {
            let percent: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("invalid value for IntOrString: {s:?}"))?;
            let scaled = i64::from(total) * percent;
            let n = if round_up {
                (scaled + 99).div_euclid(100)
            } else {
                scaled.div_euclid(100)
            };
            i32::try_from(n).map_err(|_| format!("{s} of {total} is out of range"))
        }
    }
}

/// `(maxSurge, maxUnavailable)` as counts; never both zero (that would
/// never make progress), so unavailability becomes 1 then.
pub fn fenceposts(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    replicas: i32,
) -> Result<(i32, i32), String> {
    let surge = scaled_value(max_surge, replicas, true)?;
    let unavailable = scaled_value(max_unavailable, replicas, false)?;
    if surge == 0 && unavailable == 0 {
        return Ok((0, 1));
    }
    Ok((surge, unavailable))
}

/// The new ReplicaSet's next size: grow towards `replicas` as far as the
/// surge allows.
pub fn new_replicas(replicas: i32, max_surge: i32, all_wanted: i32, new_wanted: i32) -> i32 {
    let max_total = replicas + max_surge;
    if all_wanted >= max_total {
        return new_wanted;
    }
    let grow = (max_total - all_wanted).min(replicas - new_wanted).max(0);
    new_wanted + grow
}

/// The next sizes of the old ReplicaSets (given oldest first) in a rolling
/// update: first drop their unavailable pods, then shrink them while at
/// least `replicas - max_unavailable` pods stay available.
pub fn shrink_old(replicas: i32, max_unavailable: i32, new: Size, old: &[Size]) -> Vec<i32> {
    let mut sizes: Vec<i32> = old.iter().map(|s| s.wanted).collect();
    let old_wanted: i32 = sizes.iter().sum();
    if old_wanted == 0 {
        return sizes;
    }
    let all_wanted = old_wanted + new.wanted;
    let min_available = replicas - max_unavailable;
    let new_unavailable = (new.wanted - new.available).max(0);
    let mut budget = all_wanted - min_available - new_unavailable;
    if budget <= 0 {
        return sizes;
    }
    // Unhealthy pods of old ReplicaSets go first: they serve nobody.
    for (size, rs) in sizes.iter_mut().zip(old) {
        if budget <= 0 {
            break;
        }
        let unhealthy = (*size - rs.available).max(0);
        let drop = unhealthy.min(budget);
        *size -= drop;
        budget -= drop;
    }
    // Then available ones, keeping the minimum available.
    let available: i32 = old.iter().map(|s| s.available).sum::<i32>() + new.available;
    let mut removable = available - min_available;
    for size in &mut sizes {
        if removable <= 0 {
            break;
        }
        let drop = (*size).min(removable);
        *size -= drop;
        removable -= drop;
    }
    sizes
}

/// Shares a resize of a Deployment among its active ReplicaSets (given
/// newest first) in proportion to their sizes, so that together they
/// want `allowed` (replicas plus surge); the rounding remainder goes to the
/// largest (growing: the newest of the largest; shrinking: the oldest).
pub fn proportional(allowed: i32, active: &[i32]) -> Vec<i32> {
    let current: i32 = active.iter().sum();
    let delta = allowed - current;
    if delta == 0 || current == 0 {
        return active.to_vec();
    }
    let mut order: Vec<usize> = (0..active.len()).collect();
    if delta > 0 {
        order.sort_by_key(|&i| (std::cmp::Reverse(active[i]), i));
    } else {
        order.sort_by_key(|&i| (std::cmp::Reverse(active[i]), std::cmp::Reverse(i)));
    }
    let mut sizes = active.to_vec();
    let mut shared = 0;
    for &i in &order {
        let share = (i64::from(active[i]) * i64::from(delta) / i64::from(current)) as i32;
        let share = share.max(-sizes[i]);
        sizes[i] += share;
        shared += share;
    }
    let mut left = delta - shared;
    for &i in &order {
        if left == 0 {
            break;
        }
        let step = left.max(-sizes[i]);
        sizes[i] += step;
        left -= step;
    }
    sizes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pct(s: &str) -> IntOrString {
        IntOrString::String(s.into())
    }

    #[test]
    fn percents_round_like_upstream() {
        assert_eq!(
            fenceposts(Some(&pct("25%")), Some(&pct("25%")), 3),
            Ok((1, 0))
        );
        assert_eq!(
            fenceposts(Some(&pct("25%")), Some(&pct("25%")), 10),
            Ok((3, 2))
        );
        assert_eq!(
            fenceposts(Some(&IntOrString::Int(0)), Some(&IntOrString::Int(0)), 5),
            Ok((0, 1))
        );
        assert!(fenceposts(Some(&pct("lots")), None, 3).is_err());
    }

    #[test]
    fn new_rs_grows_within_the_surge() {
        // 3 replicas, surge 1, old has 3: new may get 1.
        assert_eq!(new_replicas(3, 1, 3, 0), 1);
        // Already at the cap: stay.
        assert_eq!(new_replicas(3, 1, 4, 1), 1);
        // Old shrank to 1: new may go to 3 (not beyond replicas).
        assert_eq!(new_replicas(3, 1, 2, 1), 3);
    }

    #[test]
    fn old_shrink_keeps_minimum_available() {
        // replicas 3, maxUnavailable 0: old 3 available, new 1 not yet ready.
        let sizes = shrink_old(
            3,
            0,
            Size {
                wanted: 1,
                available: 0,
            },
            &[Size {
                wanted: 3,
                available: 3,
            }],
        );
        assert_eq!(sizes, [3]);
        // New pod became available: one old may go.
        let sizes = shrink_old(
            3,
            0,
            Size {
                wanted: 1,
                available: 1,
            },
            &[Size {
                wanted: 3,
                available: 3,
            }],
        );
        assert_eq!(sizes, [2]);
    }

    #[test]
    fn unhealthy_old_pods_go_first() {
        // Old wants 3 but only 1 available; new has 2 available of 2.
        let sizes = shrink_old(
            3,
            1,
            Size {
                wanted: 2,
                available: 2,
            },
            &[Size {
                wanted: 3,
                available: 1,
            }],
        );
        // Budget 5-2-0=3: the 2 unhealthy go; then available 3 - min 2 = 1 more.
        assert_eq!(sizes, [0]);
    }

    #[test]
    fn oldest_old_shrinks_first() {
        let old = [
            Size {
                wanted: 2,
                available: 2,
            },
            Size {
                wanted: 2,
                available: 2,
            },
        ];
        let sizes = shrink_old(
            4,
            1,
            Size {
                wanted: 1,
                available: 1,
            },
            &old,
        );
        // Available 5, min 3: two may go, both from the oldest.
        assert_eq!(sizes, [0, 2]);
    }

    #[test]
    fn resizes_are_shared_proportionally() {
        assert_eq!(proportional(10, &[5]), [10]);
        // Growing 4+2 to 9: +2 and +1.
        assert_eq!(proportional(9, &[4, 2]), [6, 3]);
        // Shrinking 6+3 to 4: remainder from the older.
        let sizes = proportional(4, &[6, 3]);
        assert_eq!(sizes.iter().sum::<i32>(), 4);
        assert!(sizes.iter().all(|&s| s >= 0));
        assert_eq!(proportional(0, &[2, 1]), [0, 0]);
    }
}
