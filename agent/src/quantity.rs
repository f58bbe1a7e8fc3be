//! Kubernetes resource quantities (`100m`, `0.5`, `128Mi`, `1e3`), as the
//! agent needs them: CPU in millicores and everything else in units, both
//! rounded up as upstream's `MilliValue`/`Value` do.

use anyhow::{Result, bail};

/// `q` in thousandths of a unit (CPU millicores), rounded up.
pub fn millis(q: &str) -> Result<i64> {
    Ok((parse(q)? * 1000.0).ceil() as i64)
}

/// `q` in units (bytes for memory), rounded up.
pub fn units(q: &str) -> Result<i64> {
    Ok(parse(q)?.ceil() as i64)
}

fn parse(q: &str) -> Result<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let number: f64 = match number.parse() {
        Ok(n) => n,
        Err(_) => bail!("{q:?} is not a quantity"),
    };
    let scale = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exp if exp.starts_with(['e', 'E']) => match exp[1..].parse::<i32>() {
            Ok(e) => 10f64.powi(e),
            Err(_) => bail!("{q:?} is not a quantity"),
        },
        _ => bail!("{q:?} is not a quantity"),
    };
    Ok(number * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_in_millicores() {
        assert_eq!(millis("100m").unwrap(), 100);
        assert_eq!(millis("0.5").unwrap(), 500);
        assert_eq!(millis("2").unwrap(), 2000);
        assert_eq!(millis("1500u").unwrap(), 2);
    }

    #[test]
    fn memory_in_bytes() {
        assert_eq!(units("128Mi").unwrap(), 128 << 20);
        assert_eq!(units("1G").unwrap(), 1_000_000_000);
        assert_eq!(units("1e3").unwrap(), 1000);
        assert_eq!(units("64").unwrap(), 64);
    }

    #[test]
    fn rejects_what_is_not_a_quantity() {
        assert!(units("lots").is_err());
        assert!(units("12Qi").is_err());
    }
}
