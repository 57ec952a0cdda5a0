//! Positions and lengths in audio, as people type them: `90`, `1:30`, `1:02:03.5`.

/// Parses `[[h:]m:]s[.fff]` into milliseconds.
pub fn parse_position(text: &str) -> Result<i64, String> {
    let bad = || format!("'{text}' is not a time: use seconds or [h:]m:s[.fff], e.g. 3:25");
    let text = text.trim();
    if text.starts_with('-') {
        return Err(format!(
            "'{text}' is negative: a position or length is counted from the start, 0 or more"
        ));
    }
    let parts: Vec<&str> = text.split(':').collect();
    if parts.is_empty() || parts.len() > 3 {
        return Err(bad());
    }
    let (seconds_part, bigger) = parts.split_last().ok_or_else(bad)?;
    let (whole, fraction) = seconds_part.split_once('.').unwrap_or((seconds_part, ""));
    if whole.is_empty() || fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let number = |s: &str| -> Result<i64, String> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || s.len() > 9 {
            return Err(bad());
        }
        s.parse().map_err(|_| bad())
    };
    let mut seconds = number(whole)?;
    if !bigger.is_empty() && seconds >= 60 {
        return Err(bad());
    }
    for (i, unit) in bigger.iter().rev().enumerate() {
        let value = number(unit)?;
        if i == 0 && bigger.len() == 2 && value >= 60 {
            return Err(bad());
        }
        seconds += value * if i == 0 { 60 } else { 3_600 };
    }
    let millis: i64 =
        if fraction.is_empty() { 0 } else { format!("{fraction:0<3}").parse().map_err(|_| bad())? };
    Ok(seconds * 1_000 + millis)
}

/// Formats milliseconds as `m:ss.fff` (or `h:mm:ss.fff`), dropping a zero fraction.
pub fn format_position(millis: i64) -> String {
    let (h, rest) = (millis / 3_600_000, millis % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, ms) = (rest / 1_000, rest % 1_000);
    let fraction = if ms == 0 { String::new() } else { format!(".{ms:03}") };
    if h > 0 {
        format!("{h}:{m:02}:{s:02}{fraction}")
    } else {
        format!("{m}:{s:02}{fraction}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_people_type() {
        let table = [
            ("seconds", "90", Ok(90_000)),
            ("minutes", "3:25", Ok(205_000)),
            ("hours", "1:02:03", Ok(3_723_000)),
            ("fraction", "0:01.5", Ok(1_500)),
            ("millis", "2.125", Ok(2_125)),
            ("zero", "0", Ok(0)),
        ];
        for (case, text, expected) in table {
            assert_eq!(parse_position(text), expected, "{case}");
        }
        for bad in ["", "abc", "1:60", "1:75:00", "-5", "1::2", "1:2:3:4", "1.2345", "3:2x"] {
            assert!(parse_position(bad).is_err(), "{bad:?} must be refused");
        }
        assert!(parse_position("-0:05").is_err_and(|e| e.contains("negative")), "a negative time says so");
    }

    #[test]
    fn formats_round_trip() {
        for millis in [0, 1_500, 65_000, 205_000, 3_723_004] {
            assert_eq!(parse_position(&format_position(millis)), Ok(millis), "{millis}");
        }
    }
}
