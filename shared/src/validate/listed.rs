//! The findings a report lists, kept compactly: a report may list up to a million of them, so each is packed
//! into one shared byte buffer (its message and value as bytes, its file, column and hint as numbers into a
//! table of the distinct texts, which repeat from finding to finding) and made a [`Finding`] again only when it
//! is read. About a tenth of the memory of a vector of findings, and serialised as a stream.

use super::finding::{Code, Finding, Severity};
use super::report::FileRank;
use serde::Serialize;
use std::borrow::Cow;
use std::collections::HashMap;

/// "No such text" in a packed finding.
const NONE: u32 = u32::MAX;

/// Findings packed back to back, in the order they are listed.
#[derive(Clone, Debug, Default)]
pub struct Findings {
    /// The packed findings.
    data: Vec<u8>,
    /// Where each finding starts in `data`, in listing order.
    starts: Vec<u64>,
    /// Distinct files, columns and hints, by number.
    texts: Vec<Cow<'static, str>>,
    numbers: HashMap<Cow<'static, str>, u32>,
}

/// The fixed part of a packed finding: severity, code, file, column, hint, line.
const FIXED: usize = 1 + 2 + 4 + 4 + 4 + 8;
/// Where the hint's number sits in a packed finding (it is rewritten in place by [`Findings::rehint`]).
const HINT_AT: usize = 1 + 2 + 4 + 4;

impl Findings {
    pub fn new() -> Findings {
        Findings::default()
    }

    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// The bytes the packed findings hold (their buffer, their starts and the distinct texts), for reports on
    /// memory.
    pub fn heap_bytes(&self) -> usize {
        self.data.capacity()
            + self.starts.capacity() * 8
            + self.texts.iter().map(|t| t.len() + 24).sum::<usize>() * 2
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    fn number(&mut self, text: Cow<'static, str>) -> u32 {
        if let Some(&n) = self.numbers.get(&text) {
            return n;
        }
        let n = self.texts.len() as u32;
        self.texts.push(text.clone());
        self.numbers.insert(text, n);
        n
    }

    fn text(&self, n: u32) -> Option<Cow<'static, str>> {
        self.texts.get(n as usize).cloned()
    }

    pub fn push(&mut self, finding: Finding) {
        let file = finding.file.map_or(NONE, |f| self.number(f));
        let column = finding.column.map_or(NONE, |c| self.number(c));
        let hint = finding.hint.map_or(NONE, |h| self.number(Cow::Owned(h)));
        let code = Code::ALL
            .iter()
            .position(|c| *c == finding.code)
            .unwrap_or(0) as u16;
        self.starts.push(self.data.len() as u64);
        let d = &mut self.data;
        d.push(match finding.severity {
            Severity::Error => 0,
            Severity::Warning => 1,
        });
        d.extend_from_slice(&code.to_le_bytes());
        d.extend_from_slice(&file.to_le_bytes());
        d.extend_from_slice(&column.to_le_bytes());
        d.extend_from_slice(&hint.to_le_bytes());
        d.extend_from_slice(&finding.line.unwrap_or(u64::MAX).to_le_bytes());
        match &finding.value {
            Some(v) => {
                d.extend_from_slice(&(v.len() as u32).to_le_bytes());
                d.extend_from_slice(v.as_bytes());
            }
            None => d.extend_from_slice(&NONE.to_le_bytes()),
        }
        d.extend_from_slice(&(finding.message.len() as u32).to_le_bytes());
        d.extend_from_slice(finding.message.as_bytes());
    }

    fn u32_at(&self, at: usize) -> u32 {
        let mut b = [0u8; 4];
        if let Some(s) = self.data.get(at..at + 4) {
            b.copy_from_slice(s);
        }
        u32::from_le_bytes(b)
    }

    fn u64_at(&self, at: usize) -> u64 {
        let mut b = [0u8; 8];
        if let Some(s) = self.data.get(at..at + 8) {
            b.copy_from_slice(s);
        }
        u64::from_le_bytes(b)
    }

    fn str_at(&self, at: usize, len: u32) -> String {
        let bytes = self.data.get(at..at + len as usize).unwrap_or(&[]);
        String::from_utf8_lossy(bytes).into_owned()
    }

    /// The file and line of the finding at `i`, without unpacking the rest (for sorting).
    fn place(&self, i: usize) -> (Option<Cow<'static, str>>, Option<u64>) {
        let at = self.starts[i] as usize;
        let line = self.u64_at(at + FIXED - 8);
        (
            self.text(self.u32_at(at + 3)),
            (line != u64::MAX).then_some(line),
        )
    }

    /// The finding at `i`, unpacked.
    pub fn get(&self, i: usize) -> Option<Finding> {
        let at = *self.starts.get(i)? as usize;
        let severity = match self.data.get(at) {
            Some(0) => Severity::Error,
            _ => Severity::Warning,
        };
        let code_index = u16::from_le_bytes([
            self.data.get(at + 1).copied().unwrap_or(0),
            self.data.get(at + 2).copied().unwrap_or(0),
        ]);
        let code = Code::ALL
            .get(code_index as usize)
            .copied()
            .unwrap_or(Code::ReportTruncated);
        let (file, line) = self.place(i);
        let column = self.text(self.u32_at(at + 7));
        let hint = self.text(self.u32_at(at + HINT_AT));
        let mut p = at + FIXED;
        let value_len = self.u32_at(p);
        p += 4;
        let value = (value_len != NONE).then(|| {
            let v = self.str_at(p, value_len);
            p += value_len as usize;
            v
        });
        let message_len = self.u32_at(p);
        let message = self.str_at(p + 4, message_len);
        Some(Finding {
            severity,
            code,
            file,
            line,
            column,
            value,
            message,
            hint: hint.map(Cow::into_owned),
        })
    }

    /// Every finding, unpacked one at a time, in listing order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Finding> + '_ {
        (0..self.len()).map(|i| {
            self.get(i)
                .unwrap_or_else(|| Finding::warning(Code::ReportTruncated, ""))
        })
    }

    /// Every finding, unpacked into a vector.
    pub fn to_vec(&self) -> Vec<Finding> {
        self.iter().collect()
    }

    pub fn first(&self) -> Option<Finding> {
        self.get(0)
    }

    /// Puts the findings in file then line order; findings of one place keep the order they were listed in.
    pub fn sort(&mut self) {
        // Files in report order, by their number (one rank per distinct file, not one per finding).
        let mut files: Vec<(FileRank, u32)> = (0..self.texts.len() as u32)
            .map(|n| (FileRank::of(self.texts.get(n as usize).map(|t| &**t)), n))
            .collect();
        files.push((FileRank::of(None), NONE));
        files.sort();
        let order: HashMap<u32, u32> = files
            .iter()
            .enumerate()
            .map(|(i, (_, n))| (*n, i as u32))
            .collect();
        let mut keyed: Vec<((u32, u64), u64)> = self
            .starts
            .iter()
            .map(|&start| {
                let at = start as usize;
                let file = order.get(&self.u32_at(at + 3)).copied().unwrap_or(u32::MAX);
                let line = self.u64_at(at + FIXED - 8);
                let line = if line == u64::MAX { 0 } else { line };
                ((file, line), start)
            })
            .collect();
        keyed.sort_by_key(|k| k.0);
        self.starts = keyed.into_iter().map(|(_, start)| start).collect();
        // The list is complete once sorted: give back what the buffer grew ahead of need.
        self.data.shrink_to_fit();
    }

    /// Gives every finding of `code` in `file` this hint.
    pub fn rehint(&mut self, file: &str, code: Code, hint: &str) {
        let Some(file_number) = self.numbers.get(file).copied() else {
            return;
        };
        let Some(code_index) = Code::ALL.iter().position(|c| *c == code) else {
            return;
        };
        let hint_number = self.number(Cow::Owned(hint.to_string()));
        for i in 0..self.starts.len() {
            let at = self.starts[i] as usize;
            let same_code =
                self.data.get(at + 1..at + 3) == Some(&(code_index as u16).to_le_bytes()[..]);
            if same_code
                && self.u32_at(at + 3) == file_number
                && let Some(slot) = self.data.get_mut(at + HINT_AT..at + HINT_AT + 4)
            {
                slot.copy_from_slice(&hint_number.to_le_bytes());
            }
        }
    }
}

impl Serialize for Findings {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl PartialEq for Findings {
    fn eq(&self, other: &Findings) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl From<Vec<Finding>> for Findings {
    fn from(findings: Vec<Finding>) -> Findings {
        let mut out = Findings::new();
        for f in findings {
            out.push(f);
        }
        out
    }
}

impl IntoIterator for Findings {
    type Item = Finding;
    type IntoIter = std::vec::IntoIter<Finding>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter().collect::<Vec<_>>().into_iter()
    }
}

impl<'a> IntoIterator for &'a Findings {
    type Item = Finding;
    type IntoIter = Box<dyn Iterator<Item = Finding> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Finding> {
        vec![
            Finding::error(
                Code::EnumInvalid,
                "\"pupil\" is not one of the allowed values",
            )
            .file("users.csv")
            .line(7)
            .column("role")
            .value(b"pupil")
            .hint("allowed: student, teacher"),
            Finding::warning(Code::ManifestMissing, "no manifest"),
            Finding::error(Code::FieldRequired, "username is required")
                .file("users.csv")
                .line(3)
                .column("username"),
            Finding::error(
                Code::EnumInvalid,
                "\"kid\" is not one of the allowed values",
            )
            .file("users.csv")
            .line(3)
            .column("role")
            .value(b"")
            .hint("allowed: student, teacher"),
        ]
    }

    #[test]
    fn findings_come_back_as_they_went_in() {
        let packed = Findings::from(sample());
        assert_eq!(packed.len(), 4);
        assert_eq!(packed.iter().collect::<Vec<_>>(), sample());
        assert_eq!(
            packed.texts.len(),
            4,
            "users.csv, role, the shared hint, username"
        );
    }

    #[test]
    fn sorting_orders_by_file_then_line_and_keeps_the_order_within_a_line() {
        let mut packed = Findings::from(sample());
        packed.sort();
        let lines: Vec<_> = packed.iter().map(|f| (f.line, f.code)).collect();
        assert_eq!(
            lines,
            [
                (None, Code::ManifestMissing),
                (Some(3), Code::FieldRequired),
                (Some(3), Code::EnumInvalid),
                (Some(7), Code::EnumInvalid),
            ]
        );
    }

    #[test]
    fn rehint_changes_only_the_findings_of_that_code_and_file() {
        let mut packed = Findings::from(sample());
        packed.rehint("users.csv", Code::EnumInvalid, "use a 1.1 role");
        let hints: Vec<_> = packed.iter().map(|f| f.hint).collect();
        assert_eq!(
            hints,
            [
                Some("use a 1.1 role".to_string()),
                None,
                None,
                Some("use a 1.1 role".to_string())
            ]
        );
    }
}
