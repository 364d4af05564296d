//! Money as whole micro-units (millionths of the account currency) in an `i64`: exact sums,
//! no floating point in balances or transfers, and overflow reported as an error.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::LedgerError;

/// Micro-units per currency unit.
pub const MICROS_PER_UNIT: i64 = 1_000_000;

/// An amount of money in micro-units. Signed: balances go below zero. Serialized as the plain
/// integer number of micro-units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Micros(i64);

impl Micros {
    pub const ZERO: Micros = Micros(0);
    pub const MAX: Micros = Micros(i64::MAX);

    pub const fn new(micros: i64) -> Micros {
        Micros(micros)
    }

    /// Whole currency units, for example `Micros::from_units(12)` is `12.000000`.
    pub fn from_units(units: i64) -> Result<Micros, LedgerError> {
        units
            .checked_mul(MICROS_PER_UNIT)
            .map(Micros)
            .ok_or(LedgerError::Overflow { operation: "conversion of whole units" })
    }

    pub const fn as_i64(self) -> i64 {
        self.0
    }

    pub const fn is_positive(self) -> bool {
        self.0 > 0
    }

    pub const fn is_negative(self) -> bool {
        self.0 < 0
    }

    pub fn checked_add(self, other: Micros) -> Result<Micros, LedgerError> {
        self.0.checked_add(other.0).map(Micros).ok_or(LedgerError::Overflow { operation: "addition" })
    }

    pub fn checked_sub(self, other: Micros) -> Result<Micros, LedgerError> {
        self.0.checked_sub(other.0).map(Micros).ok_or(LedgerError::Overflow { operation: "subtraction" })
    }

    pub fn checked_neg(self) -> Result<Micros, LedgerError> {
        self.0.checked_neg().map(Micros).ok_or(LedgerError::Overflow { operation: "negation" })
    }

    /// Sum of many amounts; an error as soon as a partial sum overflows.
    pub fn checked_sum<I: IntoIterator<Item = Micros>>(amounts: I) -> Result<Micros, LedgerError> {
        amounts.into_iter().try_fold(Micros::ZERO, Micros::checked_add)
    }

    /// Convert an amount computed in floating point (currency units) to micro-units.
    ///
    /// **The rounding rule of the whole crate:** the nearest micro-unit, halves rounded away
    /// from zero (`f64::round`), applied once to each amount that becomes a transfer, never to
    /// intermediate values. NaN, infinities and amounts beyond the `i64` range are errors.
    pub fn from_f64_units(amount_units: f64, what: &'static str) -> Result<Micros, LedgerError> {
        if !amount_units.is_finite() {
            return Err(LedgerError::InvalidInput {
                field: what,
                value: amount_units.to_string(),
                reason: "the computed amount is not a finite number; check the prices and inputs",
            });
        }
        let micros = (amount_units * MICROS_PER_UNIT as f64).round();
        // i64::MAX is not representable in f64; 2^63 is the first value out of range.
        const LIMIT: f64 = 9_223_372_036_854_775_808.0;
        if !(-LIMIT..LIMIT).contains(&micros) {
            return Err(LedgerError::Overflow { operation: "conversion of a computed amount" });
        }
        Ok(Micros(micros as i64))
    }

    /// The amount in currency units as `f64`, for display and estimates only.
    pub fn to_f64_units(self) -> f64 {
        self.0 as f64 / MICROS_PER_UNIT as f64
    }
}

impl fmt::Display for Micros {
    /// `12.345678`, `-0.000001`: always six decimals, so that columns line up and no digit is
    /// hidden.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let magnitude = self.0.unsigned_abs();
        let unit = MICROS_PER_UNIT as u64;
        let text = format!("{sign}{}.{:06}", magnitude / unit, magnitude % unit);
        f.pad(&text)
    }
}

impl FromStr for Micros {
    type Err = LedgerError;

    /// Parses `12`, `12.5`, `-0.000001`: at most six decimals, no exponent, no grouping.
    fn from_str(text: &str) -> Result<Micros, LedgerError> {
        let invalid = |reason: &'static str| LedgerError::InvalidInput {
            field: "amount",
            value: text.chars().take(40).collect(),
            reason,
        };
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, fraction) = match digits.split_once('.') {
            Some((whole, fraction)) => (whole, fraction),
            None => (digits, ""),
        };
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("expected digits, optionally a '-' and a '.' with up to 6 decimals, like 12.345678"));
        }
        if !fraction.bytes().all(|b| b.is_ascii_digit()) || (digits.contains('.') && fraction.is_empty()) {
            return Err(invalid("expected digits after the '.', like 12.5"));
        }
        if fraction.len() > 6 {
            return Err(invalid("at most 6 decimals: amounts are whole micro-units"));
        }
        let too_large = || invalid("the amount does not fit in 64-bit micro-units");
        let whole: i64 = whole.parse().map_err(|_| too_large())?;
        let fraction_micros: i64 =
            if fraction.is_empty() { 0 } else { format!("{fraction:0<6}").parse().map_err(|_| too_large())? };
        let magnitude =
            whole.checked_mul(MICROS_PER_UNIT).and_then(|m| m.checked_add(fraction_micros)).ok_or_else(too_large)?;
        Ok(Micros(if negative { -magnitude } else { magnitude }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_six_decimals_and_a_sign() {
        assert_eq!(Micros::new(12_345_678).to_string(), "12.345678");
        assert_eq!(Micros::new(-1).to_string(), "-0.000001");
        assert_eq!(Micros::ZERO.to_string(), "0.000000");
        assert_eq!(Micros::new(i64::MIN).to_string(), "-9223372036854.775808");
        assert_eq!(format!("{:>12}", Micros::new(1_500_000)), "    1.500000");
    }

    #[test]
    fn parses_what_it_formats_and_refuses_the_rest() {
        for value in [0, 1, -1, 12_345_678, -987_654_321_000, i64::MAX, i64::MIN + 1] {
            let micros = Micros::new(value);
            assert_eq!(micros.to_string().parse::<Micros>().unwrap(), micros);
        }
        assert_eq!("12".parse::<Micros>().unwrap(), Micros::new(12_000_000));
        assert_eq!("0.5".parse::<Micros>().unwrap(), Micros::new(500_000));
        for bad in ["", "-", "1.", ".5", "1.2345678", "1e6", "1,000", "+1", "abc", "99999999999999999999"] {
            assert!(bad.parse::<Micros>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn arithmetic_overflow_is_an_error_not_a_panic() {
        assert!(Micros::MAX.checked_add(Micros::new(1)).is_err());
        assert!(Micros::new(i64::MIN).checked_sub(Micros::new(1)).is_err());
        assert!(Micros::new(i64::MIN).checked_neg().is_err());
        assert!(Micros::checked_sum([Micros::MAX, Micros::new(1)]).is_err());
        assert_eq!(Micros::checked_sum([Micros::new(2), Micros::new(-5)]).unwrap(), Micros::new(-3));
        assert!(Micros::from_units(i64::MAX / 10).is_err());
    }

    #[test]
    fn floating_point_amounts_round_to_the_nearest_micro_half_away_from_zero() {
        assert_eq!(Micros::from_f64_units(1.0000004, "x").unwrap(), Micros::new(1_000_000));
        assert_eq!(Micros::from_f64_units(1.0000006, "x").unwrap(), Micros::new(1_000_001));
        // 0.0000025 units is 2.5 micro-units (exactly representable after scaling): away from zero.
        assert_eq!(Micros::from_f64_units(0.0000025, "x").unwrap(), Micros::new(3));
        assert_eq!(Micros::from_f64_units(-0.0000025, "x").unwrap(), Micros::new(-3));
        assert!(Micros::from_f64_units(f64::NAN, "x").is_err());
        assert!(Micros::from_f64_units(f64::INFINITY, "x").is_err());
        assert!(Micros::from_f64_units(1e13, "x").is_err());
        assert!(Micros::from_f64_units(9.2e12, "x").is_ok());
    }
}
