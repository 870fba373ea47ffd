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
        "", "+", "-", ".", "+.", "e5", ".e5", "1e", "1e+", "1e-", "1.2.3", "1..2", "--1", "+-1",
        "1e5.0", "0x10", "0x1p-2", "1_000", "abc", "12abc", "1,5", "١", "1e5e5",
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
