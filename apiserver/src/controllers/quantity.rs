//! Resource quantities (`100m`, `1.5`, `128Mi`, `1e3`) as integers: CPU in
//! millicores, memory in bytes, both rounded up like upstream's
//! `MilliValue()`/`Value()`.

/// The quantity times 1000, rounded up; `None` if it is not a quantity.
pub fn milli_value(quantity: &str) -> Option<i128> {
    let s = quantity.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let (negative, number) = match number.as_bytes().first() {
        Some(b'-') => (true, &number[1..]),
        Some(b'+') => (false, &number[1..]),
        _ => (false, number),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let digits: i128 = format!("{whole}{fraction}").parse().ok()?;
    // value = digits * 2^bin * 10^dec / 10^len(fraction)
    let (bin, dec): (u32, i32) = match suffix {
        "" => (0, 0),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        e if e.starts_with(['e', 'E']) => (0, e[1..].parse().ok()?),
        _ => return None,
    };
    let exponent = dec + 3 - i32::try_from(fraction.len()).ok()?;
    let mut numerator = digits.checked_mul(1i128.checked_shl(bin)?)?;
    let mut denominator = 1i128;
    if exponent >= 0 {
        numerator = numerator.checked_mul(10i128.checked_pow(exponent.unsigned_abs())?)?;
    } else {
        denominator = 10i128.checked_pow(exponent.unsigned_abs())?;
    }
    let value = (numerator + denominator - 1) / denominator;
    Some(if negative { -value } else { value })
}

/// CPU in millicores.
pub fn cpu_millis(quantity: &str) -> Option<i64> {
    milli_value(quantity).and_then(|v| i64::try_from(v).ok())
}

/// Memory (or any integral resource) in units, rounded up.
pub fn value(quantity: &str) -> Option<i64> {
    milli_value(quantity).and_then(|v| i64::try_from((v + 999).div_euclid(1000)).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu() {
        assert_eq!(cpu_millis("100m"), Some(100));
        assert_eq!(cpu_millis("1"), Some(1000));
        assert_eq!(cpu_millis("1.5"), Some(1500));
        assert_eq!(cpu_millis("0.1"), Some(100));
        assert_eq!(cpu_millis("2500u"), Some(3));
        assert_eq!(cpu_millis("1e3"), Some(1_000_000));
    }

    #[test]
    fn memory() {
        assert_eq!(value("128Mi"), Some(128 << 20));
        assert_eq!(value("1Gi"), Some(1 << 30));
        assert_eq!(value("1G"), Some(1_000_000_000));
        assert_eq!(value("1.5Ki"), Some(1536));
        assert_eq!(value("500"), Some(500));
        assert_eq!(value("1k"), Some(1000));
    }

    #[test]
    fn garbage_is_not_a_quantity() {
        for bad in ["", "abc", "1Zi", "1..2", "m", "--1"] {
            assert_eq!(milli_value(bad), None, "{bad}");
        }
    }
}
