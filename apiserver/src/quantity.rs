//! Conversion of Prometheus sample values into Kubernetes resource quantities.
//!
//! Prometheus reports sample values as decimal text. Going through `f64` would
//! turn `0.0005` into `0.000499999…` and round it the wrong way, so the text is
//! rounded to milli precision with exact decimal digit arithmetic instead.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum QuantityError {
    #[error("value is NaN")]
    NaN,
    #[error("value is +Inf")]
    PosInf,
    #[error("value is -Inf")]
    NegInf,
    #[error("not a number: {0:?}")]
    Invalid(String),
}

/// `f64` cannot hold a finite value of 10^309 or more, so Prometheus never sends
/// one; refusing anything larger keeps the output length bounded for hostile input.
const MAX_INTEGER_DIGITS: i64 = 309;

/// Exponents are clamped to this while being read so that arbitrarily long
/// exponent text cannot overflow; anything this large is out of range anyway.
const EXPONENT_CLAMP: i64 = 1_000_000_000;

/// Suffixes of the Kubernetes DecimalSI format, indexed by (exponent + 3) / 3.
const SUFFIXES: [&str; 8] = ["m", "", "k", "M", "G", "T", "P", "E"];

/// Converts a Prometheus sample value (`"102.312"`, `"1e+06"`, `"-0.5"`, `"NaN"`,
/// `"+Inf"`, `"1.5E-7"`, …) into a canonical Kubernetes DecimalSI quantity rounded
/// to the nearest milli, ties away from zero: `"102.312"` → `"102312m"`,
/// `"2000"` → `"2k"`, `"1e21"` → `"1000E"`, `"0.0004"` → `"0"`.
///
/// The text is accepted in the forms Go's `strconv.ParseFloat` accepts for
/// decimal input (optional sign, optional fraction, optional exponent, and the
/// case-insensitive `NaN`/`Inf`/`Infinity` spellings); surrounding whitespace,
/// hexadecimal floats and digit separators are rejected as [`QuantityError::Invalid`].
///
/// Values are not limited to the `i64` milli range: anything up to the `f64`
/// range (below 10^309) yields a valid, exact quantity such as
/// `"179769313486231570000…000E"`, which Kubernetes parses into its arbitrary
/// precision representation. Larger magnitudes (e.g. `"1e400"`, which Prometheus
/// itself would report as `+Inf`) are rejected as [`QuantityError::Invalid`].
pub fn milli_quantity(prometheus_value: &str) -> Result<String, QuantityError> {
    if let Some(err) = special_value(prometheus_value) {
        return Err(err);
    }
    let invalid = || QuantityError::Invalid(prometheus_value.to_owned());
    let decimal = Decimal::parse(prometheus_value).ok_or_else(invalid)?;
    if decimal.digits.is_empty() {
        return Ok("0".to_owned());
    }
    if decimal.point > MAX_INTEGER_DIGITS {
        return Err(invalid());
    }
    let milli = decimal.round_to_milli();
    Ok(format_milli(decimal.negative, &milli))
}

/// Recognises the non-finite spellings Go's `strconv.ParseFloat` accepts; a sign
/// is allowed on infinities only, as in Go.
fn special_value(text: &str) -> Option<QuantityError> {
    if text.eq_ignore_ascii_case("nan") {
        return Some(QuantityError::NaN);
    }
    let (negative, unsigned) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if unsigned.eq_ignore_ascii_case("inf") || unsigned.eq_ignore_ascii_case("infinity") {
        return Some(if negative {
            QuantityError::NegInf
        } else {
            QuantityError::PosInf
        });
    }
    None
}

/// An exact decimal number: `0.d₁d₂d₃… × 10^point`, i.e. `point` is where the
/// decimal point sits relative to the first significant digit.
#[derive(Debug, PartialEq, Eq)]
struct Decimal {
    negative: bool,
    /// Significant digits (values 0–9) without leading zeros; empty means zero.
    digits: Vec<u8>,
    point: i64,
}

impl Decimal {
    fn parse(text: &str) -> Option<Decimal> {
        let bytes = text.as_bytes();
        let mut pos = 0;
        let negative = sign(bytes, &mut pos);

        let mut digits = Vec::new();
        let mut point: i64 = 0;
        let mut seen_digit = false;
        let mut seen_dot = false;
        while let Some(&byte) = bytes.get(pos) {
            match byte {
                b'0'..=b'9' => {
                    seen_digit = true;
                    if digits.is_empty() && byte == b'0' {
                        // A leading zero moves the point only when it is after the dot.
                        if seen_dot {
                            point -= 1;
                        }
                    } else {
                        digits.push(byte - b'0');
                        if !seen_dot {
                            point += 1;
                        }
                    }
                }
                b'.' if !seen_dot => seen_dot = true,
                _ => break,
            }
            pos += 1;
        }
        if !seen_digit {
            return None;
        }

        if let Some(b'e' | b'E') = bytes.get(pos) {
            pos += 1;
            let exponent_negative = sign(bytes, &mut pos);
            let start = pos;
            let mut exponent: i64 = 0;
            while let Some(&byte @ b'0'..=b'9') = bytes.get(pos) {
                exponent = (exponent * 10 + i64::from(byte - b'0')).min(EXPONENT_CLAMP);
                pos += 1;
            }
            if pos == start {
                return None;
            }
            point += if exponent_negative {
                -exponent
            } else {
                exponent
            };
        }
        if pos != bytes.len() {
            return None;
        }

        // Trailing zeros carry no value; dropping them keeps `digits` minimal.
        while digits.last() == Some(&0) {
            digits.pop();
        }
        Some(Decimal {
            negative,
            digits,
            point,
        })
    }

    /// The magnitude times 1000, rounded half away from zero, as decimal digits
    /// without leading zeros (empty for zero).
    fn round_to_milli(&self) -> Vec<u8> {
        let point = self.point + 3;
        let Ok(kept) = usize::try_from(point) else {
            // Below 0.0001 of a milli even before rounding: always rounds to zero.
            return Vec::new();
        };
        let mut milli: Vec<u8> = self.digits.iter().copied().take(kept).collect();
        milli.resize(kept, 0);
        // Only the first dropped digit matters: ≥5 means the remainder is ≥ one half,
        // and exactly one half rounds away from zero too.
        if self.digits.get(kept).is_some_and(|&digit| digit >= 5) {
            let mut carry = true;
            for digit in milli.iter_mut().rev() {
                if *digit == 9 {
                    *digit = 0;
                } else {
                    *digit += 1;
                    carry = false;
                    break;
                }
            }
            if carry {
                milli.insert(0, 1);
            }
        }
        milli
    }
}

/// Formats `±milli × 10⁻³` with the largest DecimalSI suffix that keeps the
/// mantissa an integer.
fn format_milli(negative: bool, milli: &[u8]) -> String {
    if milli.is_empty() {
        // Also covers "-0" and "-0.0001": Kubernetes has no negative zero.
        return "0".to_owned();
    }
    let trailing_zeros = milli.iter().rev().take_while(|&&digit| digit == 0).count();
    let steps = (trailing_zeros / 3).min(SUFFIXES.len() - 1);
    let mantissa = &milli[..milli.len() - steps * 3];
    let mut out = String::with_capacity(mantissa.len() + 2);
    if negative {
        out.push('-');
    }
    out.extend(mantissa.iter().map(|&digit| char::from(b'0' + digit)));
    out.push_str(SUFFIXES[steps]);
    out
}

/// An optional `-` or `+` at `pos` (moved past it): whether it is `-`.
fn sign(bytes: &[u8], pos: &mut usize) -> bool {
    match bytes.get(*pos) {
        Some(b'-') => {
            *pos += 1;
            true
        }
        Some(b'+') => {
            *pos += 1;
            false
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests;
