//! Field readers shared by the formats, each returning the rejection a bad value deserves.

use super::{RejectReason, Rejection};
use crate::model::decimal::{DecimalError, parse_scaled};
use crate::model::{CancelReason, Price, Quantity, Side};

/// A positive quantity. Accepts a zero fraction (`500.00`); rejects negatives, fractions and text.
#[inline]
pub fn quantity(text: &[u8], field: &str) -> Result<Quantity, Rejection> {
    let q = quantity_or_zero(text, field)?;
    if q == 0 {
        return Err(Rejection::new(RejectReason::BadQuantity, format!("{field} is zero")));
    }
    Ok(q)
}

/// The displayed quantity of a reserve (iceberg) order of `quantity`: empty when all of it is
/// shown; zero for a fully hidden order; never more than the order.
pub fn displayed_quantity(text: &[u8], quantity: Quantity) -> Result<Option<Quantity>, Rejection> {
    if text.is_empty() {
        return Ok(None);
    }
    let shown = quantity_or_zero(text, "displayed_quantity")?;
    if shown > quantity {
        return Err(Rejection::new(
            RejectReason::BadQuantity,
            format!("displayed_quantity {shown} is more than the order's quantity {quantity}"),
        ));
    }
    Ok(Some(shown))
}

/// A non-negative quantity (zero allowed: quote sizes).
#[inline]
pub fn quantity_or_zero(text: &[u8], field: &str) -> Result<Quantity, Rejection> {
    if text.is_empty() {
        return Err(Rejection::new(RejectReason::MissingField, format!("{field} is empty")));
    }
    let mut n: u64 = 0;
    let mut digits = text;
    if let Some(dot) = memchr::memchr(b'.', text) {
        if text[dot + 1..].iter().all(|&b| b == b'0') {
            digits = &text[..dot];
        } else {
            return Err(bad_quantity(text, field));
        }
    }
    if digits.is_empty() {
        return Err(bad_quantity(text, field));
    }
    for &b in digits {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return Err(bad_quantity(text, field));
        }
        n = n.checked_mul(10).and_then(|n| n.checked_add(d as u64)).ok_or_else(|| bad_quantity(text, field))?;
    }
    Ok(n)
}

#[cold]
fn bad_quantity(text: &[u8], field: &str) -> Rejection {
    let text = String::from_utf8_lossy(text);
    let why = if text.starts_with('-') { "negative" } else { "not an unsigned integer" };
    Rejection::new(RejectReason::BadQuantity, format!("{field} {text:?} is {why}"))
}

/// A positive price at `scale` decimal places.
#[inline]
pub fn price(text: &[u8], scale: u8, field: &str) -> Result<Price, Rejection> {
    match parse_scaled(text, scale) {
        Ok(p) if p > 0 => Ok(Price(p)),
        Ok(_) => Err(Rejection::new(
            RejectReason::BadPrice,
            format!("{field} {:?} is not positive", String::from_utf8_lossy(text)),
        )),
        Err(DecimalError::Empty) => Err(Rejection::new(RejectReason::MissingField, format!("{field} is empty"))),
        Err(e) => {
            Err(Rejection::new(RejectReason::BadPrice, format!("{field} {:?}: {e}", String::from_utf8_lossy(text))))
        }
    }
}

/// A side.
#[inline]
pub fn side(text: &[u8], field: &str) -> Result<Side, Rejection> {
    if text.is_empty() {
        return Err(Rejection::new(RejectReason::MissingField, format!("{field} is empty")));
    }
    Side::parse(text).ok_or_else(|| {
        Rejection::new(
            RejectReason::UnknownSide,
            format!("{field} {:?} is not buy or sell", String::from_utf8_lossy(text)),
        )
    })
}

/// An optional side: empty is `None`.
#[inline]
pub fn optional_side(text: &[u8], field: &str) -> Result<Option<Side>, Rejection> {
    if text.is_empty() { Ok(None) } else { side(text, field).map(Some) }
}

/// A cancel's reason (`cancel_reason`): empty is a member's own cancel.
pub fn cancel_reason(text: &[u8]) -> Result<CancelReason, Rejection> {
    CancelReason::parse(text).ok_or_else(|| {
        Rejection::new(
            RejectReason::UnknownCancelReason,
            format!(
                "cancel_reason {:?} is not member, uncross, connectivity, kill_switch or expired",
                String::from_utf8_lossy(text)
            ),
        )
    })
}

/// A required non-empty field.
#[inline]
pub fn required<'a>(text: &'a [u8], field: &str) -> Result<&'a [u8], Rejection> {
    if text.is_empty() {
        Err(Rejection::new(RejectReason::MissingField, format!("{field} is empty")))
    } else {
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(quantity(b"500", "q"), Ok(500));
        assert_eq!(quantity(b"500.00", "q"), Ok(500));
        assert_eq!(quantity(b"-5", "q").map_err(|r| r.reason), Err(RejectReason::BadQuantity));
        assert_eq!(quantity(b"5.5", "q").map_err(|r| r.reason), Err(RejectReason::BadQuantity));
        assert_eq!(quantity(b"0", "q").map_err(|r| r.reason), Err(RejectReason::BadQuantity));
        assert_eq!(quantity(b"", "q").map_err(|r| r.reason), Err(RejectReason::MissingField));
        assert_eq!(quantity(b"99999999999999999999999", "q").map_err(|r| r.reason), Err(RejectReason::BadQuantity));
    }

    #[test]
    fn prices() {
        assert_eq!(price(b"101.25", 2, "p"), Ok(Price(10125)));
        assert_eq!(price(b"0", 2, "p").map_err(|r| r.reason), Err(RejectReason::BadPrice));
        assert_eq!(price(b"-3", 2, "p").map_err(|r| r.reason), Err(RejectReason::BadPrice));
        assert_eq!(price(b"NaN", 2, "p").map_err(|r| r.reason), Err(RejectReason::BadPrice));
        assert_eq!(price(b"1.001", 2, "p").map_err(|r| r.reason), Err(RejectReason::BadPrice));
    }
}
