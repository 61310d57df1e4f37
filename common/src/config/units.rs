//! Flink's value syntaxes: memory sizes (`MemorySize.parse`, `toHumanReadableString`,
//! `multiply`) and durations (`TimeUtils.parseDuration`), reproduced to the byte so a Flink
//! configuration yields the same numbers here.

use std::fmt;
use std::time::Duration;

/// A number of bytes, parsed and printed the way Flink's `MemorySize` does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemorySize(pub u64);

/// Flink's `MemoryUnit`s: the accepted spellings and their multipliers, smallest first.
const UNITS: [(&[&str], u64); 5] = [
    (&["b", "bytes"], 1),
    (&["k", "kb", "kibibytes"], 1 << 10),
    (&["m", "mb", "mebibytes"], 1 << 20),
    (&["g", "gb", "gibibytes"], 1 << 30),
    (&["t", "tb", "tebibytes"], 1 << 40),
];

/// Largest value Flink's `MemorySize` can hold (`MemorySize.MAX_VALUE`).
pub const MAX_MEMORY_BYTES: u64 = i64::MAX as u64;

fn all_memory_units() -> String {
    UNITS
        .iter()
        .map(|(names, _)| format!("({})", names.join(" | ")))
        .collect::<Vec<_>>()
        .join(" / ")
}

/// Splits `text` into its leading decimal digits and the trimmed, lower-cased rest.
fn split_number(text: &str) -> Result<(u64, String), String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("argument is an empty- or whitespace-only string".to_string());
    }
    let digits = trimmed.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = trimmed.split_at(digits);
    if number.is_empty() {
        return Err("text does not start with a number".to_string());
    }
    let value = number
        .parse::<u64>()
        .map_err(|_| format!("The value '{number}' cannot be re represented as 64bit number (numeric overflow)."))?;
    Ok((value, unit.trim().to_lowercase()))
}

impl MemorySize {
    pub const ZERO: MemorySize = MemorySize(0);
    pub const MAX: MemorySize = MemorySize(MAX_MEMORY_BYTES);

    pub const fn mebibytes(m: u64) -> MemorySize {
        MemorySize(m << 20)
    }

    pub fn bytes(self) -> u64 {
        self.0
    }

    /// `MemorySize.parse`: digits, optional white space, optional unit; bare numbers are bytes.
    pub fn parse(text: &str) -> Result<MemorySize, String> {
        let (value, unit) = split_number(text)?;
        let multiplier = if unit.is_empty() {
            1
        } else {
            UNITS
                .iter()
                .find(|(names, _)| names.contains(&unit.as_str()))
                .map(|(_, m)| *m)
                .ok_or_else(|| {
                    format!(
                        "Memory size unit '{unit}' does not match any of the recognized units: {}",
                        all_memory_units()
                    )
                })?
        };
        value
            .checked_mul(multiplier)
            .filter(|b| *b <= MAX_MEMORY_BYTES)
            .map(MemorySize)
            .ok_or_else(|| {
                format!(
                    "The value '{}' cannot be re represented as 64bit number of bytes (numeric overflow).",
                    text.trim()
                )
            })
    }

    pub fn checked_add(self, other: MemorySize) -> Option<MemorySize> {
        self.0.checked_add(other.0).map(MemorySize)
    }

    /// Saturating at zero; callers check order first where Flink would throw.
    pub fn saturating_sub(self, other: MemorySize) -> MemorySize {
        MemorySize(self.0.saturating_sub(other.0))
    }

    /// `MemorySize.multiply(double)`: `BigDecimal(bytes) × BigDecimal.valueOf(m)`, truncated.
    /// `BigDecimal.valueOf` takes the double's shortest decimal form, which is what Rust's
    /// `Display` for `f64` prints, so the product is exact decimal arithmetic on that string.
    pub fn multiply(self, multiplier: f64) -> MemorySize {
        if !(multiplier.is_finite() && multiplier > 0.0) {
            return MemorySize::ZERO;
        }
        let text = format!("{multiplier}");
        let (int_part, frac_part) = text.split_once('.').unwrap_or((&text, ""));
        let digits = format!("{int_part}{frac_part}");
        let scale = frac_part.len() as u32;
        let Ok(mantissa) = digits.parse::<u128>() else {
            return MemorySize::MAX;
        };
        let product = u128::from(self.0) * mantissa;
        let value = if scale > 38 { 0 } else { product / 10u128.pow(scale) };
        MemorySize(u64::try_from(value).unwrap_or(MAX_MEMORY_BYTES).min(MAX_MEMORY_BYTES))
    }

    /// `MemorySize.toHumanReadableString`: the largest unit the size exceeds, three decimals,
    /// then the exact bytes (`1.688gb (1811939328 bytes)`, `0 bytes`).
    pub fn human(self) -> String {
        let unit = UNITS.iter().rev().find(|(_, m)| self.0 > *m);
        match unit {
            None | Some((_, 1)) => format!("{} bytes", self.0),
            Some((names, multiplier)) => format!(
                "{}{} ({} bytes)",
                three_decimals_half_up(self.0 as f64 / *multiplier as f64),
                names[1],
                self.0
            ),
        }
    }
}

/// Java's `String.format("%.3f", x)`: the double's shortest decimal form rounded HALF_UP
/// (so 1.5625 prints 1.563 where Rust's `{:.3}` would print 1.562).
fn three_decimals_half_up(x: f64) -> String {
    let text = format!("{x}");
    let (int_part, frac_part) = text.split_once('.').unwrap_or((&text, ""));
    let mut digits: Vec<u8> = int_part
        .bytes()
        .chain(frac_part.bytes().chain(std::iter::repeat(b'0')).take(3))
        .map(|b| b - b'0')
        .collect();
    if frac_part.as_bytes().get(3).is_some_and(|d| *d >= b'5') {
        let mut i = digits.len();
        loop {
            if i == 0 {
                digits.insert(0, 1);
                break;
            }
            i -= 1;
            if digits[i] == 9 {
                digits[i] = 0;
            } else {
                digits[i] += 1;
                break;
            }
        }
    }
    let split = digits.len() - 3;
    let render = |ds: &[u8]| ds.iter().map(|d| char::from(b'0' + d)).collect::<String>();
    format!("{}.{}", render(&digits[..split]), render(&digits[split..]))
}

impl fmt::Display for MemorySize {
    /// `MemorySize.toString`: the largest unit that divides the size exactly (`1728 mb`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (names, multiplier) = UNITS
            .iter()
            .rev()
            .find(|(_, m)| self.0.is_multiple_of(*m))
            .unwrap_or(&UNITS[0]);
        write!(f, "{} {}", self.0 / multiplier, names[1])
    }
}

/// Flink's `TimeUtils` unit labels; each plural label is also accepted with a trailing `s`.
const TIME_UNITS: [(&[&str], &[&str], Duration); 7] = [
    (&["d"], &["day"], Duration::from_secs(86_400)),
    (&["h"], &["hour"], Duration::from_secs(3_600)),
    (&["min", "m"], &["minute"], Duration::from_secs(60)),
    (&["s"], &["sec", "second"], Duration::from_secs(1)),
    (&["ms"], &["milli", "millisecond"], Duration::from_millis(1)),
    (&["µs"], &["micro", "microsecond"], Duration::from_micros(1)),
    (&["ns"], &["nano", "nanosecond"], Duration::from_nanos(1)),
];

fn time_unit(label: &str) -> Option<Duration> {
    TIME_UNITS.iter().find_map(|(singular, plural, unit)| {
        let hit = singular.contains(&label) || plural.iter().any(|p| label == *p || label.strip_suffix('s') == Some(p));
        hit.then_some(*unit)
    })
}

fn all_time_units() -> String {
    TIME_UNITS
        .iter()
        .map(|(singular, plural, _)| {
            let mut labels: Vec<String> = singular.iter().map(|s| s.to_string()).collect();
            for p in plural.iter() {
                labels.push(p.to_string());
                labels.push(format!("{p}s"));
            }
            format!("({})", labels.join(" | "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `TimeUtils.parseDuration`: digits, optional white space, optional unit; bare numbers are ms.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (value, label) = split_number(text)?;
    if label.is_empty() {
        return Ok(Duration::from_millis(value));
    }
    let unit = time_unit(&label).ok_or_else(|| {
        format!(
            "Time interval unit label '{label}' does not match any of the recognized units: {}",
            all_time_units()
        )
    })?;
    u32::try_from(value)
        .ok()
        .and_then(|v| unit.checked_mul(v))
        .ok_or_else(|| format!("The value '{}' is too large for a duration.", text.trim()))
}

/// Prints a duration the way Flink's `TimeUtils.formatWithHighestUnit` does (`50 s`, `100 ms`).
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    let units: [(&str, u128); 7] = [
        ("d", 86_400_000_000_000),
        ("h", 3_600_000_000_000),
        ("min", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("µs", 1_000),
        ("ns", 1),
    ];
    if nanos == 0 {
        return "0 ms".to_string();
    }
    let (label, size) = units
        .iter()
        .find(|(_, size)| nanos.is_multiple_of(*size))
        .copied()
        .unwrap_or(("ns", 1));
    format!("{} {label}", nanos / size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flink_memory_spellings() {
        assert_eq!(MemorySize::parse("1728m").unwrap().bytes(), 1728 << 20);
        assert_eq!(MemorySize::parse("1 gb").unwrap().bytes(), 1 << 30);
        assert_eq!(MemorySize::parse("32kb").unwrap().bytes(), 32 << 10);
        assert_eq!(MemorySize::parse(" 64 MB ").unwrap().bytes(), 64 << 20);
        assert_eq!(MemorySize::parse("123").unwrap().bytes(), 123);
        assert_eq!(MemorySize::parse("2 tebibytes").unwrap().bytes(), 2 << 40);
        assert_eq!(MemorySize::parse("0").unwrap(), MemorySize::ZERO);
    }

    #[test]
    fn rejects_bad_memory_sizes_with_flinks_reason() {
        let e = MemorySize::parse("12 parsecs").unwrap_err();
        assert!(e.contains("Memory size unit 'parsecs' does not match"), "{e}");
        assert!(MemorySize::parse("lots")
            .unwrap_err()
            .contains("does not start with a number"));
        assert!(MemorySize::parse("").unwrap_err().contains("empty"));
        assert!(MemorySize::parse("99999999999999999999")
            .unwrap_err()
            .contains("overflow"));
        assert!(MemorySize::parse("9999999999 tb").unwrap_err().contains("overflow"));
        assert!(MemorySize::parse("1.5g").is_err());
    }

    #[test]
    fn human_readable_matches_flink_log() {
        assert_eq!(MemorySize(1811939328).human(), "1.688gb (1811939328 bytes)");
        assert_eq!(MemorySize(536870902).human(), "512.000mb (536870902 bytes)");
        assert_eq!(MemorySize(1 << 30).human(), "1024.000mb (1073741824 bytes)");
        assert_eq!(MemorySize(0).human(), "0 bytes");
        assert_eq!(MemorySize(1).human(), "1 bytes");
        assert_eq!(MemorySize(1024).human(), "1024 bytes");
        assert_eq!(MemorySize(1025).human(), "1.001kb (1025 bytes)");
        assert_eq!(MemorySize(1728 << 20).to_string(), "1728 mb");
        // Java rounds HALF_UP: 1600m process = 1.5625 gb.
        assert_eq!(MemorySize(1677721600).human(), "1.563gb (1677721600 bytes)");
        assert_eq!(three_decimals_half_up(9.9996), "10.000");
        assert_eq!(three_decimals_half_up(0.5), "0.500");
    }

    #[test]
    fn multiply_uses_decimal_form_of_widened_float() {
        // Flink's fractions are floats widened to double: 0.4f = 0.4000000059604645.
        let flink = MemorySize(1342177280);
        assert_eq!(flink.multiply(f64::from(0.4f32)).bytes(), 536870920);
        assert_eq!(flink.multiply(f64::from(0.1f32)).bytes(), 134217730);
        assert_eq!(MemorySize(1000).multiply(0.5).bytes(), 500);
        assert_eq!(MemorySize(1000).multiply(0.0).bytes(), 0);
        assert_eq!(MemorySize(1000).multiply(1e-300).bytes(), 0);
    }

    #[test]
    fn parses_flink_durations() {
        assert_eq!(parse_duration("30 s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5 min").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("10000").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("2 hours").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("100ms").unwrap(), Duration::from_millis(100));
        assert_eq!(parse_duration("3 seconds").unwrap(), Duration::from_secs(3));
        let e = parse_duration("3 fortnights").unwrap_err();
        assert!(e.contains("Time interval unit label 'fortnights'"), "{e}");
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn formats_durations_with_highest_unit() {
        assert_eq!(format_duration(Duration::from_secs(50)), "50 s");
        assert_eq!(format_duration(Duration::from_millis(100)), "100 ms");
        assert_eq!(format_duration(Duration::from_secs(300)), "5 min");
    }
}
