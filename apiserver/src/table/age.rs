//! Ages as `kubectl get` shows them: upstream's `duration.HumanDuration`.

use chrono::{DateTime, Utc};
use serde_json::Value;

/// The age of an RFC 3339 timestamp at `now`; `<unknown>` when missing.
pub fn since(timestamp: Option<&Value>, now: DateTime<Utc>) -> String {
    match timestamp.and_then(parse) {
        Some(then) => human_duration(now.signed_duration_since(then)),
        None => "<unknown>".to_owned(),
    }
}

/// A timestamp field (`2024-05-01T10:00:00Z`, also with fractions).
pub fn parse(value: &Value) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value.as_str()?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Two significant units at most, coarser as the duration grows:
/// `45s`, `3m20s`, `25m`, `5h10m`, `30h`, `2d3h`, `20d`, `2y45d`, `10y`.
pub fn human_duration(d: chrono::TimeDelta) -> String {
    let seconds = d.num_seconds();
    // Allow two seconds of clock skew before calling a time invalid.
    if seconds < -1 {
        return "<invalid>".to_owned();
    }
    if seconds < 0 {
        return "0s".to_owned();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{}d", hours / 24),
            h => format!("{}d{h}h", hours / 24),
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let years = hours / 24 / 365;
        return match (hours / 24) % 365 {
            0 => format!("{years}y"),
            days => format!("{years}y{days}d"),
        };
    }
    format!("{}y", hours / 24 / 365)
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;
    use serde_json::json;

    use super::*;

    #[test]
    fn like_upstream() {
        let cases = [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (200, "3m20s"),
            (600, "10m"),
            (179 * 60 + 59, "179m"),
            (3 * 3600, "3h"),
            (5 * 3600 + 10 * 60, "5h10m"),
            (30 * 3600, "30h"),
            (51 * 3600, "2d3h"),
            (72 * 3600, "3d"),
            (20 * 86400, "20d"),
            (800 * 86400, "2y70d"),
            (3650 * 86400, "10y"),
        ];
        for (seconds, want) in cases {
            assert_eq!(
                human_duration(TimeDelta::seconds(seconds)),
                want,
                "{seconds}s"
            );
        }
    }

    #[test]
    fn ages_of_timestamps() {
        let now = parse(&json!("2024-05-01T12:00:00Z")).unwrap();
        assert_eq!(since(Some(&json!("2024-05-01T11:55:00Z")), now), "5m");
        assert_eq!(since(Some(&json!("2024-05-01T11:59:59.5Z")), now), "0s");
        assert_eq!(since(None, now), "<unknown>");
        assert_eq!(since(Some(&json!("yesterday")), now), "<unknown>");
    }
}
