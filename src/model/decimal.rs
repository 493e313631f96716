//! Exact money: fixed-point prices and integer quantities. No `f64` touches a price.
//!
//! A [`Price`] is an integer count of `10^-scale` currency units, where the scale belongs to
//! the instrument (see [`crate::reference`]). A notional is `price x quantity` computed in
//! `i128` at the price's scale, so it is exact for any realistic order.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The largest supported number of decimal places.
pub const MAX_SCALE: u8 = 12;

/// A price in `10^-scale` units of the instrument's currency.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Price(pub i64);

/// A quantity in units of the instrument (shares, contracts, lots).
pub type Quantity = u64;

/// Why a decimal could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    /// Empty text.
    #[error("empty")]
    Empty,
    /// Not a decimal number (letters, two dots, NaN, exponents...).
    #[error("not a decimal number")]
    Syntax,
    /// More decimal places than the scale holds, with non-zero digits beyond it.
    #[error("more than {0} decimal places")]
    TooPrecise(u8),
    /// Too large for 64 bits at this scale.
    #[error("out of range")]
    Overflow,
}

/// Reads a decimal such as `-12.5`, `101.2500` or `7` as an integer count of `10^-scale`.
/// Trailing zeros beyond the scale are accepted; other digits beyond it are an error, since
/// rounding a price silently would change what was traded.
pub fn parse_scaled(text: &[u8], scale: u8) -> Result<i64, DecimalError> {
    if text.is_empty() {
        return Err(DecimalError::Empty);
    }
    let (negative, digits) = match text[0] {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() {
        return Err(DecimalError::Syntax);
    }
    const LIMIT: u64 = i64::MAX as u64;
    let mut value: u64 = 0;
    let mut seen_dot = false;
    let mut seen_digit = false;
    let mut fraction_digits: u8 = 0;
    for &b in digits {
        let d = b.wrapping_sub(b'0');
        if d <= 9 {
            seen_digit = true;
            if seen_dot {
                if fraction_digits >= scale {
                    if d != 0 {
                        return Err(DecimalError::TooPrecise(scale));
                    }
                    continue;
                }
                fraction_digits += 1;
            }
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(d as u64))
                .filter(|&v| v <= LIMIT)
                .ok_or(DecimalError::Overflow)?;
        } else if b == b'.' && !seen_dot {
            seen_dot = true;
        } else {
            return Err(DecimalError::Syntax);
        }
    }
    if !seen_digit {
        return Err(DecimalError::Syntax);
    }
    for _ in fraction_digits..scale {
        value = value.checked_mul(10).filter(|&v| v <= LIMIT).ok_or(DecimalError::Overflow)?;
    }
    Ok(if negative { -(value as i64) } else { value as i64 })
}

/// Changes the scale of a fixed-point value exactly, or fails if digits would be lost.
pub fn rescale(value: i64, from: u8, to: u8) -> Result<i64, DecimalError> {
    if from == to {
        return Ok(value);
    }
    if to > from {
        let factor = 10i128.pow((to - from) as u32);
        let v = value as i128 * factor;
        i64::try_from(v).map_err(|_| DecimalError::Overflow)
    } else {
        let factor = 10i64.pow((from - to) as u32);
        if value % factor != 0 { Err(DecimalError::TooPrecise(to)) } else { Ok(value / factor) }
    }
}

/// A fixed-point number with its scale, for display and JSON output.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decimal {
    /// The integer count of `10^-scale`.
    pub mantissa: i128,
    /// Decimal places.
    pub scale: u8,
}

impl Decimal {
    /// A price at its instrument's scale.
    pub fn price(price: Price, scale: u8) -> Decimal {
        Decimal { mantissa: price.0 as i128, scale }
    }

    /// The exact notional `price x quantity`.
    pub fn notional(price: Price, quantity: Quantity, scale: u8) -> Decimal {
        Decimal { mantissa: price.0 as i128 * quantity as i128, scale }
    }

    /// A whole number of currency units.
    pub fn units(units: i128) -> Decimal {
        Decimal { mantissa: units, scale: 0 }
    }

    /// This value at `scale` decimal places (more places only; exact).
    pub fn at_scale(self, scale: u8) -> Option<i128> {
        if scale < self.scale {
            return None;
        }
        self.mantissa.checked_mul(10i128.checked_pow((scale - self.scale) as u32)?)
    }

    /// Compares two decimals exactly.
    pub fn cmp_exact(self, other: Decimal) -> std::cmp::Ordering {
        let scale = self.scale.max(other.scale);
        match (self.at_scale(scale), other.at_scale(scale)) {
            (Some(a), Some(b)) => a.cmp(&b),
            _ => (self.mantissa as f64 / 10f64.powi(self.scale as i32))
                .total_cmp(&(other.mantissa as f64 / 10f64.powi(other.scale as i32))),
        }
    }

    /// An approximation for ratios and scores (never for money decisions).
    pub fn to_f64(self) -> f64 {
        self.mantissa as f64 / 10f64.powi(self.scale as i32)
    }

    /// Reads a decimal string at its natural scale (up to [`MAX_SCALE`] places).
    pub fn parse(text: &str) -> Result<Decimal, DecimalError> {
        let places = text.split_once('.').map_or(0, |(_, f)| f.len()).min(MAX_SCALE as usize) as u8;
        Ok(Decimal { mantissa: parse_scaled(text.trim().as_bytes(), places)? as i128, scale: places })
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.scale == 0 {
            return write!(f, "{}", self.mantissa);
        }
        let factor = 10i128.pow(self.scale as u32);
        let sign = if self.mantissa < 0 { "-" } else { "" };
        let abs = self.mantissa.unsigned_abs();
        let (int, frac) = (abs / factor as u128, abs % factor as u128);
        let frac = format!("{:0width$}", frac, width = self.scale as usize);
        let frac = frac.trim_end_matches('0');
        if frac.is_empty() { write!(f, "{sign}{int}") } else { write!(f, "{sign}{int}.{frac}") }
    }
}

impl Serialize for DecimalText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// Serializes a [`Decimal`] as an exact string, e.g. `"101.25"`.
pub struct DecimalText(pub Decimal);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exactly() {
        assert_eq!(parse_scaled(b"101.25", 4), Ok(1_012_500));
        assert_eq!(parse_scaled(b"636.0", 4), Ok(6_360_000));
        assert_eq!(parse_scaled(b"7", 2), Ok(700));
        assert_eq!(parse_scaled(b"-0.5", 1), Ok(-5));
        assert_eq!(parse_scaled(b"1.23000", 2), Ok(123));
        assert_eq!(parse_scaled(b"1.234", 2), Err(DecimalError::TooPrecise(2)));
        assert_eq!(parse_scaled(b"NaN", 2), Err(DecimalError::Syntax));
        assert_eq!(parse_scaled(b"1e5", 2), Err(DecimalError::Syntax));
        assert_eq!(parse_scaled(b"1.2.3", 2), Err(DecimalError::Syntax));
        assert_eq!(parse_scaled(b".", 2), Err(DecimalError::Syntax));
        assert_eq!(parse_scaled(b"", 2), Err(DecimalError::Empty));
        assert_eq!(parse_scaled(b"99999999999999999999", 0), Err(DecimalError::Overflow));
    }

    #[test]
    fn notional_is_exact_and_prints_exactly() {
        let n = Decimal::notional(Price(1_012_500), 3_000_000, 4);
        assert_eq!(n.to_string(), "303750000");
        assert_eq!(Decimal::price(Price(5_853_300), 4).to_string(), "585.33");
        assert_eq!(Decimal { mantissa: -5, scale: 2 }.to_string(), "-0.05");
        assert_eq!(Decimal::parse("1000000.50").map(|d| d.to_string()), Ok("1000000.5".to_string()));
    }

    #[test]
    fn rescales_without_loss() {
        assert_eq!(rescale(5_853_300, 4, 2), Ok(58_533));
        assert_eq!(rescale(5_853_301, 4, 2), Err(DecimalError::TooPrecise(2)));
        assert_eq!(rescale(12, 2, 4), Ok(1200));
    }
}
