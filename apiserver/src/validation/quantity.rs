//! Resource quantities (`500m`, `128Mi`, `1e3`): parsing and exact
//! comparison, as upstream's `resource.Quantity`.

use std::ops::Add;

use serde_json::Value;

/// The syntax upstream accepts, quoted in its error messages.
pub const QUANTITY_REGEX: &str = "^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$";

/// A quantity as a whole number of nano-units (values below 1n round up,
/// like upstream).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity(i128);

const NANOS_PER_UNIT: i128 = 1_000_000_000;

impl Quantity {
    /// Parses the string form; `None` when it is not a quantity.
    pub fn parse(s: &str) -> Option<Quantity> {
        let (negative, rest) = match s.as_bytes().first()? {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(number_len);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
            return None;
        }
        // numerator / 10^scale is the number; multiplier is 10^exp10 * 2^exp2.
        let significant = format!("{whole}{fraction}");
        let significant = significant.trim_start_matches('0');
        let numerator: i128 = if significant.is_empty() {
            0
        } else {
            significant.parse().ok()?
        };
        let scale = i32::try_from(fraction.len()).ok()?;
        let (exp10, exp2) = suffix_exponents(suffix)?;
        let nanos = scaled(numerator, exp10 - scale + 9, exp2)?;
        Some(Quantity(if negative { -nanos } else { nanos }))
    }

    /// A JSON quantity: a string, or a number as clients also send.
    pub fn from_json(value: &Value) -> Option<Quantity> {
        match value {
            Value::String(s) => Quantity::parse(s),
            Value::Number(n) => Quantity::parse(&n.to_string()),
            _ => None,
        }
    }

    pub fn is_positive(&self) -> bool {
        self.0 > 0
    }

    pub fn is_negative(&self) -> bool {
        self.0 < 0
    }

    /// Whole units, rounded up (upstream's `Value()`): bytes of memory.
    pub fn ceil_units(&self) -> i128 {
        ceil_div(self.0, NANOS_PER_UNIT)
    }

    /// Thousandths, rounded up (upstream's `MilliValue()`): millicores of CPU.
    pub fn ceil_millis(&self) -> i128 {
        ceil_div(self.0, NANOS_PER_UNIT / 1000)
    }
}

impl Add for Quantity {
    type Output = Quantity;

    fn add(self, other: Quantity) -> Quantity {
        Quantity(self.0.saturating_add(other.0))
    }
}

fn ceil_div(value: i128, divisor: i128) -> i128 {
    value.div_euclid(divisor) + i128::from(value.rem_euclid(divisor) != 0)
}

/// The powers of ten and two a suffix multiplies by.
fn suffix_exponents(suffix: &str) -> Option<(i32, i32)> {
    let binary = |p| Some((0, p));
    let decimal = |p| Some((p, 0));
    match suffix {
        "Ki" => binary(10),
        "Mi" => binary(20),
        "Gi" => binary(30),
        "Ti" => binary(40),
        "Pi" => binary(50),
        "Ei" => binary(60),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "" => decimal(0),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        _ => {
            let exponent = suffix.strip_prefix(['e', 'E'])?;
            let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            decimal(exponent.parse().ok()?)
        }
    }
}

/// `numerator * 10^exp10 * 2^exp2`, rounded up to a whole number.
fn scaled(numerator: i128, exp10: i32, exp2: i32) -> Option<i128> {
    let mut value = numerator.checked_mul(2i128.checked_pow(u32::try_from(exp2).ok()?)?)?;
    if exp10 >= 0 {
        value = value.checked_mul(10i128.checked_pow(u32::try_from(exp10).ok()?)?)?;
    } else {
        let divisor = 10i128.checked_pow(exp10.unsigned_abs());
        value = match divisor {
            Some(d) => value / d + i128::from(value % d != 0),
            None => i128::from(value != 0),
        };
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap_or_else(|| panic!("{s} should parse"))
    }

    #[test]
    fn spellings_of_the_same_amount_are_equal() {
        assert_eq!(q("1"), q("1000m"));
        assert_eq!(q("1Gi"), q("1024Mi"));
        assert_eq!(q("1k"), q("1e3"));
        assert_eq!(q("1.5"), q("1500m"));
        assert_eq!(q("0.5Gi"), q("512Mi"));
        assert_eq!(q("+2"), q("2"));
        assert_eq!(q(".5"), q("500m"));
        assert_eq!(q("0"), Quantity::default());
    }

    #[test]
    fn ordering_signs_and_rounding() {
        assert!(q("100m") < q("1"));
        assert!(q("-1").is_negative());
        assert!(q("1n").is_positive());
        assert!(q("0.1n").is_positive(), "sub-nano values round up");
        assert_eq!(q("1500m").ceil_units(), 2);
        assert_eq!(q("128Mi").ceil_units(), 134_217_728);
        assert_eq!(q("250m").ceil_millis(), 250);
        assert_eq!(q("2").ceil_millis(), 2000);
        assert_eq!(q("0.0001").ceil_millis(), 1, "rounds up");
        assert_eq!(q("100m") + q("900m"), q("1"));
    }

    #[test]
    fn malformed_quantities_are_rejected() {
        for bad in [
            "", "abc", "1.2.3", "1Qi", "1e", "1e+", "Mi", "1 Gi", "--1", ".", "1KiB",
        ] {
            assert_eq!(Quantity::parse(bad), None, "{bad:?}");
        }
        assert_eq!(Quantity::from_json(&serde_json::json!(2)), Some(q("2")));
        assert_eq!(Quantity::from_json(&serde_json::json!(true)), None);
    }
}
