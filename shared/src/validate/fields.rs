//! Checks of single field values by type: identifiers, vocabularies, booleans, dates, date-times, years,
//! numbers, CEDS grades, lists and `userIds`. Each returns what is wrong as a [`Problem`] (or nothing); the
//! caller adds where it happened.

use crate::spec::GRADES;
use crate::validate::finding::{Code, Severity, shown_value};
use crate::validate::suggest;

/// What is wrong with a value, before the caller adds file, line and column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    pub code: Code,
    pub message: String,
    pub hint: Option<String>,
}

impl Problem {
    fn error(code: Code, message: String, hint: impl Into<Option<String>>) -> Problem {
        Problem {
            severity: Severity::Error,
            code,
            message,
            hint: hint.into(),
        }
    }

    fn warning(code: Code, message: String, hint: impl Into<Option<String>>) -> Problem {
        Problem {
            severity: Severity::Warning,
            code,
            message,
            hint: hint.into(),
        }
    }
}

/// A value as quoted in a message: cut to a readable length, control characters made visible.
fn q(v: &str) -> String {
    format!("\"{}\"", shown_value(v.as_bytes()))
}

/// Printable ASCII other than space, comma and double quote: the bytes of an unremarkable id.
const PLAIN_ID_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut c = b'!';
    while c < 0x7f {
        table[c as usize] = c != b',' && c != b'"';
        c += 1;
    }
    table
};

/// Longest sourcedId accepted.
pub const MAX_GUID_BYTES: usize = 255;

/// A sourcedId: non-empty, at most 255 bytes, no spaces, commas, quotes or control characters (any of those
/// breaks lists and lookups downstream).
pub fn guid(v: &str) -> Option<Problem> {
    // Fast path, one pass: plain ASCII with nothing that breaks lists or lookups.
    let b = v.as_bytes();
    if !b.is_empty() && b.len() <= MAX_GUID_BYTES && b.iter().all(|&c| PLAIN_ID_BYTE[c as usize]) {
        return None;
    }
    let bad = if v.len() > MAX_GUID_BYTES {
        Some(format!(
            "is {} bytes long; the limit is {MAX_GUID_BYTES}",
            v.len()
        ))
    } else if v.trim() != v {
        Some("has spaces around it".to_string())
    } else if v.contains(char::is_whitespace) {
        Some("contains a space".to_string())
    } else if v.contains(',') {
        Some("contains a comma".to_string())
    } else if v.contains('"') {
        Some("contains a double quote".to_string())
    } else if v.contains(char::is_control) {
        Some("contains a control character".to_string())
    } else {
        None
    };
    bad.map(|why| {
        Problem::error(
            Code::FieldGuid,
            format!("the identifier {} {why}", q(v)),
            "identifiers may not contain spaces, commas, quotes or control characters; fix it in the SIS export"
                .to_string(),
        )
    })
}

/// A value of at most 16 bytes as a number, read in a few loads whatever its length: with the length, it
/// tells the value apart from every other one.
pub fn short_key(b: &[u8]) -> Option<u128> {
    let word = |at: usize| -> u64 {
        let mut w = [0; 8];
        w.copy_from_slice(&b[at..at + 8]);
        u64::from_le_bytes(w)
    };
    let half = |at: usize| -> u64 {
        let mut w = [0; 4];
        w.copy_from_slice(&b[at..at + 4]);
        u64::from(u32::from_le_bytes(w))
    };
    let n = b.len();
    Some(match n {
        // The first and last eight bytes (overlapping when shorter than 16) with the length fix the value.
        8..=16 => u128::from(word(0)) | u128::from(word(n - 8)) << 64,
        4..=7 => u128::from(half(0) | half(n - 4) << 32),
        1..=3 => u128::from(b[0]) | u128::from(b[n / 2]) << 8 | u128::from(b[n - 1]) << 16,
        0 => 0,
        _ => return None,
    })
}

/// A vocabulary prepared for fast matching: each value's length and [`short_key`], worked out once.
#[derive(Clone, Debug)]
pub struct Vocabulary {
    allowed: &'static [&'static str],
    keys: Vec<(usize, Option<u128>)>,
}

impl Vocabulary {
    pub fn new(allowed: &'static [&'static str]) -> Vocabulary {
        Vocabulary {
            allowed,
            keys: allowed
                .iter()
                .map(|a| (a.len(), short_key(a.as_bytes())))
                .collect(),
        }
    }

    /// The same answer as [`one_of`], sooner for short values.
    #[inline]
    pub fn find(&self, v: &str) -> Result<u8, Problem> {
        match self.index(v) {
            Some(i) => Ok(i),
            None => one_of(v, self.allowed),
        }
    }

    /// The index of a short value written exactly as allowed; `None` for anything else (which [`one_of`]
    /// decides).
    #[inline]
    fn index(&self, v: &str) -> Option<u8> {
        let b = v.as_bytes();
        let key = short_key(b)?;
        self.keys
            .iter()
            .position(|&(len, k)| len == b.len() && k == Some(key))
            .map(|i| i as u8)
    }
}

/// One value of a vocabulary; returns its index in `allowed`.
pub fn one_of(v: &str, allowed: &'static [&'static str]) -> Result<u8, Problem> {
    // Length and first byte first: most candidates are ruled out without comparing their bytes.
    let first = v.as_bytes().first();
    if let Some(i) = allowed
        .iter()
        .position(|a| a.len() == v.len() && a.as_bytes().first() == first && *a == v)
    {
        return Ok(i as u8);
    }
    if let Some(right) = allowed.iter().find(|a| a.eq_ignore_ascii_case(v.trim())) {
        return Err(Problem::error(
            Code::EnumCase,
            format!(
                "{} must be written {right:?}; values are case-sensitive",
                q(v)
            ),
            format!("did you mean {right}?"),
        ));
    }
    let hint = match suggest::closest(v, allowed.iter().copied()) {
        Some(best) => format!("did you mean {best}? allowed: {}", allowed.join(", ")),
        None => format!("allowed: {}", allowed.join(", ")),
    };
    Err(Problem::error(
        Code::EnumInvalid,
        format!("{} is not one of the allowed values", q(v)),
        hint,
    ))
}

/// `true` or `false`. `TRUE`/`FALSE` (what spreadsheets write) are read with a warning.
#[inline]
pub fn boolean(v: &str) -> (Option<bool>, Option<Problem>) {
    // The two right values inline in the caller; anything else out of line.
    match v {
        "true" => (Some(true), None),
        "false" => (Some(false), None),
        _ => not_plain_boolean(v),
    }
}

/// A value other than `true` and `false` in a boolean column.
fn not_plain_boolean(v: &str) -> (Option<bool>, Option<Problem>) {
    if !(v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false")) {
        return (
            None,
            Some(Problem::error(
                Code::BoolInvalid,
                format!("{} is not a boolean", q(v)),
                "write true or false".to_string(),
            )),
        );
    }
    let right = v.to_ascii_lowercase();
    let value = right == "true";
    (
        Some(value),
        Some(Problem::warning(
            Code::BoolCase,
            format!(
                "{} was read as {right}; booleans are written true or false",
                q(v)
            ),
            format!(
                "did you mean {right}? save the file from a plain-text editor, not a spreadsheet"
            ),
        )),
    )
}

/// A calendar date `YYYY-MM-DD`; returns a day number that orders dates.
pub fn date(v: &str) -> Result<i64, Problem> {
    parse_date(v).ok_or_else(|| {
        Problem::error(
            Code::DateInvalid,
            format!("{} is not a date", q(v)),
            "write dates as YYYY-MM-DD, for example 2026-08-17".to_string(),
        )
    })
}

/// An ISO 8601 UTC date-time, such as `2026-08-17T14:03:00.000Z`. A bare date is read as midnight with a warning.
pub fn date_time(v: &str) -> Option<Problem> {
    if v.len() == 10 && parse_date(v).is_some() {
        return Some(Problem::warning(
            Code::DateTimeBareDate,
            format!(
                "{} is a date; a date-time was expected (read as midnight UTC)",
                q(v)
            ),
            format!("write {v}T00:00:00.000Z"),
        ));
    }
    if parse_date_time(v) {
        return None;
    }
    let hint = if v.len() >= 19
        && v.len() <= 40
        && !v.ends_with('Z')
        && parse_date_time(&format!("{v}Z"))
    {
        format!("add the UTC marker: {v}Z")
    } else {
        "write date-times in UTC as YYYY-MM-DDTHH:MM:SS.sssZ, for example 2026-08-17T14:03:00.000Z"
            .to_string()
    };
    Some(Problem::error(
        Code::DateTimeInvalid,
        format!("{} is not an ISO 8601 UTC date-time", q(v)),
        hint,
    ))
}

/// A text value on one line: a line break inside a name or title is an export slip (a copy and paste into the
/// SIS) that breaks the apps showing it.
pub fn line_break(v: &str) -> Option<Problem> {
    if !v.contains(['\n', '\r']) {
        return None;
    }
    Some(Problem::error(
        Code::FieldLineBreak,
        "the value has a line break inside it".to_string(),
        "keep the value on one line: remove the line break in the SIS (it usually comes from a paste)"
            .to_string(),
    ))
}

/// A four-digit year.
pub fn year(v: &str) -> Option<Problem> {
    if v.len() == 4 && v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(Problem::error(
        Code::YearInvalid,
        format!("{} is not a four-digit year", q(v)),
        "write the year the school year ends in, for example 2027 for 2026-27".to_string(),
    ))
}

/// A finite decimal number.
pub fn float(v: &str) -> Option<Problem> {
    match v.parse::<f64>() {
        Ok(f)
            if f.is_finite()
                && !v.contains(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E') =>
        {
            None
        }
        _ => Some(Problem::error(
            Code::FloatInvalid,
            format!("{} is not a number", q(v)),
            "write a decimal number such as 85 or 92.5".to_string(),
        )),
    }
}

/// One CEDS grade code.
pub fn grade(v: &str) -> Option<Problem> {
    if GRADES.contains(&v) {
        return None;
    }
    let padded = format!("0{v}");
    let suggestion = if v.len() == 1 && GRADES.contains(&padded.as_str()) {
        Some(format!(
            "did you mean {padded}? grades 1-9 are two digits (a spreadsheet may have dropped the zero)"
        ))
    } else if let Some(right) = GRADES.iter().find(|g| g.eq_ignore_ascii_case(v)) {
        Some(format!(
            "did you mean {right}? grade codes are case-sensitive"
        ))
    } else if matches!(v, "K" | "k" | "0" | "00") {
        Some("did you mean KG? kindergarten is KG".to_string())
    } else if v.contains(' ') {
        Some(
            "list several grades comma-separated inside one quoted field, for example \"09,10\""
                .to_string(),
        )
    } else {
        None
    };
    let hint =
        suggestion.unwrap_or_else(|| format!("use a CEDS grade code: {}", GRADES.join(", ")));
    Some(Problem::error(
        Code::GradeInvalid,
        format!("{} is not a CEDS grade code", q(v)),
        hint,
    ))
}

/// Only visible ASCII characters (no space, control character, DEL or non-ASCII byte): none of it is, or is
/// part of, whitespace.
fn visible_ascii(b: &[u8]) -> bool {
    b.iter().all(|&c| c > b' ' && c < 0x7f)
}

/// The items of a comma-separated list, trimmed, with problems about the list itself (empty items, spaces).
pub fn list_items(v: &str) -> (impl Iterator<Item = &str>, Vec<Problem>) {
    let b = v.as_bytes();
    // Nearly every list: nothing to trim and no empty item, so one pass over its bytes says it is fine.
    let clean = !b.is_empty()
        && visible_ascii(b)
        && b.first() != Some(&b',')
        && b.last() != Some(&b',')
        && !b.windows(2).any(|w| w == b",,");
    let mut problems = Vec::new();
    let mut spaced = false;
    let mut empty = false;
    if !clean {
        for item in v.split(',') {
            let trimmed = item.trim();
            spaced |= trimmed.len() != item.len();
            empty |= trimmed.is_empty();
        }
    }
    if empty {
        problems.push(Problem::error(
            Code::ListEmptyItem,
            format!("the list {} has an empty item", q(v)),
            "remove the extra comma".to_string(),
        ));
    }
    if spaced {
        problems.push(Problem::warning(
            Code::ListSpaces,
            format!(
                "the list {} has spaces around its items (they were trimmed)",
                q(v)
            ),
            "separate list items with a comma and no spaces".to_string(),
        ));
    }
    let items = v.split(',').map(str::trim).filter(|i| !i.is_empty());
    (items, problems)
}

/// A `userIds` value: `{type:identifier}` items separated by commas.
pub fn user_ids(v: &str) -> Option<Problem> {
    if visible_ascii(v.as_bytes()) && user_ids_visible_ascii(v.as_bytes()) {
        return None;
    }
    let mut rest = v.trim();
    loop {
        let ok = rest
            .strip_prefix('{')
            .and_then(|r| r.find('}').map(|end| (&r[..end], &r[end + 1..])));
        let Some((item, after)) = ok else { break };
        let Some((kind, id)) = item.split_once(':') else {
            break;
        };
        if kind.trim().is_empty() || id.trim().is_empty() {
            break;
        }
        let after = after.trim_start();
        if after.is_empty() {
            return None;
        }
        match after.strip_prefix(',') {
            Some(next) => rest = next.trim_start(),
            None => break,
        }
    }
    Some(Problem::error(
        Code::UserIdsInvalid,
        format!("{} is not a list of {{type:identifier}} items", q(v)),
        "write each identifier as {type:identifier}, comma-separated, for example \"{LDAP:12},{ClassLink:345}\""
            .to_string(),
    ))
}

/// A `userIds` value of visible ASCII is valid: `{type:identifier}` items, each part non-empty, joined by commas.
fn user_ids_visible_ascii(mut rest: &[u8]) -> bool {
    loop {
        let Some(inner) = rest.strip_prefix(b"{") else {
            return false;
        };
        let Some(close) = inner.iter().position(|&c| c == b'}') else {
            return false;
        };
        let item = &inner[..close];
        match item.iter().position(|&c| c == b':') {
            Some(colon) if colon > 0 && colon + 1 < item.len() => {}
            _ => return false,
        }
        match &inner[close + 1..] {
            [] => return true,
            [b',', next @ ..] => rest = next,
            _ => return false,
        }
    }
}

/// Day number of a `YYYY-MM-DD` date (days since 0000-03-01), or `None` when it is not a real date.
pub fn parse_date(v: &str) -> Option<i64> {
    let b = v.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y = digits(&b[0..4])?;
    let m = digits(&b[5..7])?;
    let d = digits(&b[8..10])?;
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    // Days from civil (H. Hinnant's algorithm).
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe)
}

fn parse_date_time(v: &str) -> bool {
    let b = v.as_bytes();
    // Every valid date-time is ASCII; checking first makes the byte slicing below safe.
    if !v.is_ascii() || b.len() < 20 || parse_date(&v[..10]).is_none() || b[10] != b'T' {
        return false;
    }
    let (time, zone) = if let Some(t) = v[11..].strip_suffix('Z') {
        (t, true)
    } else if let Some(t) = v[11..].strip_suffix("+00:00") {
        (t, true)
    } else {
        (&v[11..], false)
    };
    let t = time.as_bytes();
    if !zone || t.len() < 8 || t[2] != b':' || t[5] != b':' {
        return false;
    }
    let (Some(h), Some(mi), Some(s)) = (digits(&t[0..2]), digits(&t[3..5]), digits(&t[6..8]))
    else {
        return false;
    };
    if h > 23 || mi > 59 || s > 60 {
        return false;
    }
    match &t[8..] {
        [] => true,
        [b'.', frac @ ..] => {
            !frac.is_empty() && frac.len() <= 9 && frac.iter().all(u8::is_ascii_digit)
        }
        _ => false,
    }
}

fn digits(b: &[u8]) -> Option<i64> {
    b.iter().try_fold(0i64, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
    })
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert!(date("2026-08-17").is_ok());
        assert!(date("2024-02-29").is_ok());
        assert!(date("2025-02-29").is_err());
        assert!(date("2026-8-17").is_err());
        assert!(date("08/17/2026").is_err());
        assert!(parse_date("2026-08-18").unwrap() - parse_date("2026-08-17").unwrap() == 1);
        assert!(parse_date("2027-01-01").unwrap() - parse_date("2026-12-31").unwrap() == 1);
    }

    #[test]
    fn date_times() {
        assert_eq!(date_time("2026-08-17T14:03:00.000Z"), None);
        assert_eq!(date_time("2026-08-17T14:03:00Z"), None);
        assert_eq!(date_time("2026-08-17T14:03:00+00:00"), None);
        assert_eq!(
            date_time("2026-08-17").map(|p| p.code),
            Some(Code::DateTimeBareDate)
        );
        let missing_z = date_time("2026-08-17T14:03:00.000").expect("no zone");
        assert_eq!(missing_z.code, Code::DateTimeInvalid);
        assert_eq!(
            missing_z.hint.as_deref(),
            Some("add the UTC marker: 2026-08-17T14:03:00.000Z")
        );
        assert!(date_time("2026-08-17T25:03:00Z").is_some());
        assert!(date_time("2026-08-17 14:03:00Z").is_some());
    }

    #[test]
    fn booleans_and_enums() {
        assert_eq!(boolean("true"), (Some(true), None));
        assert_eq!(boolean("TRUE").1.map(|p| p.code), Some(Code::BoolCase));
        assert_eq!(boolean("yes").1.map(|p| p.code), Some(Code::BoolInvalid));
        let classes = crate::spec::CLASS_TYPES;
        assert_eq!(one_of("scheduled", classes), Ok(1));
        // The prepared vocabulary answers the same, for every value and near miss of every vocabulary.
        for allowed in [
            classes,
            crate::spec::USER_ROLES,
            crate::spec::ENROLLMENT_ROLES,
            crate::spec::ORG_TYPES,
            crate::spec::SESSION_TYPES,
            crate::spec::STATUS_VALUES,
        ] {
            let vocabulary = Vocabulary::new(allowed);
            for value in allowed {
                let mut near: Vec<String> = vec![
                    value.to_string(),
                    value.to_uppercase(),
                    format!("{value} "),
                    value[1..].to_string(),
                    value[..value.len() - 1].to_string(),
                    format!("{value}{value}"),
                ];
                if value.len() > 2 {
                    near.push(format!("{}x{}", &value[..1], &value[2..]));
                }
                for v in near
                    .iter()
                    .map(String::as_str)
                    .chain(["", "x", "1234567890abcdefg"])
                {
                    assert_eq!(
                        vocabulary.find(v),
                        one_of(v, allowed),
                        "{v:?} in {allowed:?}"
                    );
                }
            }
        }
        let p = one_of("Scheduled", classes).unwrap_err();
        assert_eq!(
            (p.code, p.hint.as_deref()),
            (Code::EnumCase, Some("did you mean scheduled?"))
        );
        assert_eq!(
            one_of("schedule", classes).unwrap_err().code,
            Code::EnumInvalid
        );
    }

    #[test]
    fn short_keys_tell_values_of_a_length_apart() {
        // Every value of up to six bytes over a small alphabet, and a few longer ones: no two of the same length
        // share a key.
        let mut values: Vec<Vec<u8>> = vec![Vec::new()];
        let mut frontier = values.clone();
        for _ in 0..6 {
            frontier = frontier
                .iter()
                .flat_map(|v| {
                    b"ab,z".iter().map(move |&c| {
                        let mut longer = v.clone();
                        longer.push(c);
                        longer
                    })
                })
                .collect();
            values.extend(frontier.iter().cloned());
        }
        for n in 7..=16 {
            for i in 0..n {
                let mut v = vec![b'a'; n];
                v[i] = b'b';
                values.push(v);
            }
        }
        let mut seen = std::collections::HashSet::new();
        for v in &values {
            let key = short_key(v).expect("short");
            assert!(seen.insert((v.len(), key)), "{v:?}");
        }
        assert_eq!(short_key(&[b'a'; 17]), None);
    }

    #[test]
    fn grades_and_lists() {
        assert_eq!(grade("09"), None);
        assert!(
            grade("9")
                .unwrap()
                .hint
                .unwrap()
                .starts_with("did you mean 09?")
        );
        assert!(
            grade("kg")
                .unwrap()
                .hint
                .unwrap()
                .starts_with("did you mean KG?")
        );
        // A clean list takes a faster path; it agrees with the general one.
        for v in [
            "a", "a,b", "a,b,c", "abc,de", "a,", ",a", "a,,b", ",", "", "a b", "é,a",
        ] {
            let (items, problems) = list_items(v);
            let items: Vec<&str> = items.collect();
            let expected: Vec<&str> = v
                .split(',')
                .map(str::trim)
                .filter(|i| !i.is_empty())
                .collect();
            assert_eq!(items, expected, "{v:?}");
            let codes: Vec<Code> = problems.iter().map(|p| p.code).collect();
            let empty = v.split(',').any(|i| i.trim().is_empty());
            let spaced = v.split(',').any(|i| i.trim().len() != i.len());
            let mut want = Vec::new();
            if empty {
                want.push(Code::ListEmptyItem);
            }
            if spaced {
                want.push(Code::ListSpaces);
            }
            assert_eq!(codes, want, "{v:?}");
        }
        let (items, problems) = list_items("a, b,,c");
        assert_eq!(items.collect::<Vec<_>>(), ["a", "b", "c"]);
        let codes: Vec<_> = problems.iter().map(|p| p.code).collect();
        assert_eq!(codes, [Code::ListEmptyItem, Code::ListSpaces]);
    }

    #[test]
    fn identifiers_years_numbers_user_ids() {
        assert_eq!(guid("stu-001"), None);
        assert!(guid("stu 001").is_some());
        assert!(guid("a,b").is_some());
        assert_eq!(year("2027"), None);
        assert!(year("27").is_some());
        assert_eq!(float("92.5"), None);
        assert!(float("NaN").is_some());
        assert!(float("abc").is_some());
        assert_eq!(user_ids("{LDAP:12},{ClassLink:345}"), None);
        // Values without spaces take a faster path; it agrees with the general one.
        for v in [
            "{a:b}",
            "{a:b},{c:d}",
            "{a:b:c}",
            "{:b}",
            "{a:}",
            "{a}",
            "{a:b}x",
            "{a:b},",
            ",{a:b}",
            "{a:b}{c:d}",
            "{a:b},,{c:d}",
            "{{a:b}",
            "{a:b}}",
            "",
            "{",
            "}",
            "{a:b},{c",
            "{a:{b}",
            "{a:b},{c:d},{e:f}",
        ] {
            let general = user_ids(&format!(" {v}"));
            assert_eq!(user_ids(v).is_some(), general.is_some(), "{v:?}");
        }
        assert_eq!(user_ids("{LDAP:12}"), None);
        assert!(user_ids("LDAP:12").is_some());
        assert!(user_ids("{LDAP}").is_some());
        assert!(user_ids("{LDAP:1}{x:2}").is_some());
    }
}
