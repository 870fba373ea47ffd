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
        let negative = match bytes.first() {
            Some(b'-') => {
                pos += 1;
                true
            }
            Some(b'+') => {
                pos += 1;
                false
            }
            _ => false,
        };

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
            let exponent_negative = match bytes.get(pos) {
                Some(b'-') => {
                    pos += 1;
                    true
                }
                Some(b'+') => {
                    pos += 1;
                    false
                }
                _ => false,
            };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(input: &str) -> String {
        milli_quantity(input).unwrap_or_else(|err| panic!("{input:?}: {err}"))
    }

    fn invalid(input: &str) {
        assert_eq!(
            milli_quantity(input),
            Err(QuantityError::Invalid(input.to_owned())),
            "{input:?}"
        );
    }

    #[test]
    fn documented_examples() {
        let cases = [
            ("102.312", "102312m"),
            ("10", "10"),
            ("2000", "2k"),
            ("1500", "1500"),
            ("1.5", "1500m"),
            ("0", "0"),
            ("-0.5", "-500m"),
            ("0.0004", "0"),
            ("0.0005", "1m"),
            ("-0.0005", "-1m"),
            ("1e+06", "1M"),
            ("1e21", "1000E"),
            ("40", "40"),
            ("0.1", "100m"),
            ("123456789.123", "123456789123m"),
        ];
        for (input, expected) in cases {
            assert_eq!(ok(input), expected, "{input:?}");
        }
    }

    #[test]
    fn zero_has_no_sign() {
        for input in [
            "-0",
            "+0",
            "-0.0",
            "0.000",
            "-0.0004",
            "-0e10",
            "0e999999999999",
            ".0",
        ] {
            assert_eq!(ok(input), "0", "{input:?}");
        }
    }

    #[test]
    fn leading_plus_is_accepted() {
        assert_eq!(ok("+5"), "5");
        assert_eq!(ok("+0.25"), "250m");
        assert_eq!(ok("+1e3"), "1k");
    }

    #[test]
    fn exponent_forms() {
        assert_eq!(ok("1.5E-7"), "0");
        assert_eq!(ok("1.5e-3"), "2m");
        assert_eq!(ok("2.5e-3"), "3m");
        assert_eq!(ok("1e-07"), "0");
        assert_eq!(ok("1E3"), "1k");
        assert_eq!(ok("1e+21"), "1000E");
        assert_eq!(ok("1.234e2"), "123400m");
        assert_eq!(ok("12345e-2"), "123450m");
        assert_eq!(ok("1e-99999999999999999999"), "0");
    }

    #[test]
    fn decimal_point_forms() {
        assert_eq!(ok("1."), "1");
        assert_eq!(ok(".5"), "500m");
        assert_eq!(ok("007.100"), "7100m");
        assert_eq!(ok("0.000000"), "0");
    }

    #[test]
    fn rounds_half_away_from_zero_exactly() {
        // Each of these is inexact in binary floating point, where the tie
        // would be decided by representation error instead of the rule.
        assert_eq!(ok("0.0015"), "2m");
        assert_eq!(ok("-0.0015"), "-2m");
        assert_eq!(ok("1.0005"), "1001m");
        assert_eq!(ok("2.0025"), "2003m");
        assert_eq!(ok("0.00149999999999999999999"), "1m");
        assert_eq!(ok("0.0004999999999999999"), "0");
        assert_eq!(ok("0.00050000000000000001"), "1m");
    }

    #[test]
    fn rounding_carries_into_new_digits_and_suffixes() {
        assert_eq!(ok("0.9995"), "1");
        assert_eq!(ok("999.9995"), "1k");
        assert_eq!(ok("-999999.9999"), "-1M");
        assert_eq!(ok("0.0009"), "1m");
    }

    #[test]
    fn picks_largest_suffix_that_keeps_an_integer_mantissa() {
        assert_eq!(ok("1000"), "1k");
        assert_eq!(ok("1010"), "1010");
        assert_eq!(ok("1200000"), "1200k");
        assert_eq!(ok("3e9"), "3G");
        assert_eq!(ok("3e12"), "3T");
        assert_eq!(ok("3e15"), "3P");
        assert_eq!(ok("3e18"), "3E");
        assert_eq!(ok("-4e6"), "-4M");
        assert_eq!(ok("0.01"), "10m");
    }

    #[test]
    fn beyond_i64_milli_range_stays_exact() {
        assert_eq!(ok("9223372036854775807"), "9223372036854775807");
        assert_eq!(ok("92233720368547758.075"), "92233720368547758075m");
        assert_eq!(ok("1e30"), "1000000000000E");
        let max = ok("1.7976931348623157e+308");
        assert!(
            max.starts_with("17976931348623157") && max.ends_with("0E"),
            "{max}"
        );
        assert_eq!(max.len(), 309 - 18 + 1);
        assert_eq!(ok("-1e308"), format!("-1{}E", "0".repeat(308 - 18)));
    }

    #[test]
    fn rejects_magnitudes_beyond_f64() {
        invalid("1e400");
        invalid("1e309");
        invalid(&format!("1{}", "0".repeat(309)));
        invalid("-1e99999999999999999999999");
    }

    #[test]
    fn non_finite_values() {
        assert_eq!(milli_quantity("NaN"), Err(QuantityError::NaN));
        assert_eq!(milli_quantity("nan"), Err(QuantityError::NaN));
        assert_eq!(milli_quantity("+Inf"), Err(QuantityError::PosInf));
        assert_eq!(milli_quantity("Inf"), Err(QuantityError::PosInf));
        assert_eq!(milli_quantity("infinity"), Err(QuantityError::PosInf));
        assert_eq!(milli_quantity("-Inf"), Err(QuantityError::NegInf));
        assert_eq!(milli_quantity("-Infinity"), Err(QuantityError::NegInf));
        invalid("-NaN");
        invalid("+NaN");
        invalid("Infin");
    }

    #[test]
    fn rejects_whitespace() {
        for input in [" 1", "1 ", "\t1", "1\n", " ", "1 000", "- 1"] {
            invalid(input);
        }
    }

    #[test]
    fn rejects_garbage() {
        for input in [
            "", "+", "-", ".", "+.", "e5", ".e5", "1e", "1e+", "1e-", "1.2.3", "1..2", "--1",
            "+-1", "1e5.0", "0x10", "0x1p-2", "1_000", "abc", "12abc", "1,5", "١", "1e5e5",
        ] {
            invalid(input);
        }
    }

    #[test]
    fn error_messages() {
        assert_eq!(QuantityError::NaN.to_string(), "value is NaN");
        assert_eq!(QuantityError::PosInf.to_string(), "value is +Inf");
        assert_eq!(QuantityError::NegInf.to_string(), "value is -Inf");
        assert_eq!(
            milli_quantity("x\"y").unwrap_err().to_string(),
            r#"not a number: "x\"y""#
        );
    }

    #[test]
    fn decimal_parse_normalises_digits() {
        let parsed = Decimal::parse("-000120.0300e1").expect("valid");
        assert_eq!(
            parsed,
            Decimal {
                negative: true,
                digits: vec![1, 2, 0, 0, 3],
                point: 4,
            }
        );
        let tiny = Decimal::parse("0.00500").expect("valid");
        assert_eq!(tiny.digits, vec![5]);
        assert_eq!(tiny.point, -2);
    }
}
