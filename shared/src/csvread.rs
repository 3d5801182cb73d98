//! A streaming CSV record reader with bounded memory. Rows without quotes (nearly every row of a real export)
//! are split in place with SIMD searches for the line end and the commas; any row with a quote, a stray
//! carriage return or a line that does not fit the buffer goes through `csv_core`'s full RFC 4180 parser. It
//! knows the line each record starts on, skips a UTF-8 byte-order mark, accepts LF and CRLF, and refuses to
//! grow past the configured row size or field count: an oversized row is skipped whole and reported, never
//! buffered.

use csv_core::{ReadRecordResult, Reader, ReaderBuilder, Terminator};
use std::io::{self, Read};

const INPUT_BUFFER: usize = 256 << 10;

// Byte classes for the single pass over a line.
const ORDINARY: u8 = 0;
const COMMA: u8 = 1;
const NUL: u8 = 2;
const LF: u8 = 3;
const CR: u8 = 4;
const QUOTE: u8 = 5;

const CLASS: [u8; 256] = {
    let mut table = [ORDINARY; 256];
    table[b',' as usize] = COMMA;
    table[0] = NUL;
    table[b'\n' as usize] = LF;
    table[b'\r' as usize] = CR;
    table[b'"' as usize] = QUOTE;
    table
};

/// What [`RecordReader::next_record`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// A record starting on this line is in the reader's buffer.
    Record { line: u64 },
    /// A record starting on this line was longer than the row limit and was skipped.
    TooLong { line: u64 },
    /// A record starting on this line had more fields than the limit and was skipped.
    TooManyFields { line: u64 },
    /// No more records.
    End,
}

/// Where the current record's bytes are.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Held {
    /// In the input buffer from this offset (a quote-free line): fields are split by commas in place.
    InPlace(usize),
    /// In `out`, unquoted by `csv_core`.
    Parsed,
}

/// Reads CSV records from any byte source, one at a time, into reused buffers.
pub struct RecordReader<R> {
    core: Reader,
    src: R,
    input: Box<[u8]>,
    pos: usize,
    /// Bytes of `input` holding data.
    filled: usize,
    eof: bool,
    bom_checked: bool,
    held: Held,
    out: Vec<u8>,
    /// End offset of each field, relative to the start of the record's bytes.
    ends: Vec<usize>,
    nfields: usize,
    record_len: usize,
    /// Whether the current record holds a NUL byte.
    nul: bool,
    max_record_bytes: usize,
    max_fields: usize,
    bytes_read: u64,
    /// Line number of the byte at `pos`.
    line: u64,
    /// The last byte consumed was a carriage return.
    cr_pending: bool,
}

impl<R: Read> RecordReader<R> {
    pub fn new(src: R, max_record_bytes: usize, max_fields: usize) -> RecordReader<R> {
        RecordReader {
            core: ReaderBuilder::new().terminator(Terminator::CRLF).build(),
            src,
            input: vec![0; INPUT_BUFFER].into_boxed_slice(),
            pos: 0,
            filled: 0,
            eof: false,
            bom_checked: false,
            held: Held::Parsed,
            out: vec![0; 4096.min(max_record_bytes.max(1))],
            ends: vec![0; 64.min(max_fields.max(1))],
            nfields: 0,
            record_len: 0,
            nul: false,
            max_record_bytes: max_record_bytes.max(1),
            max_fields: max_fields.max(1),
            bytes_read: 0,
            line: 1,
            cr_pending: false,
        }
    }

    /// Bytes consumed from the source so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// Moves unread bytes to the front of the buffer and reads more after them. Returns false at end of input.
    fn fill(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.pos > 0 {
            self.input.copy_within(self.pos..self.filled, 0);
            self.filled -= self.pos;
            self.pos = 0;
        }
        if self.filled == self.input.len() {
            return Ok(true);
        }
        let n = read_some(&mut self.src, &mut self.input[self.filled..])?;
        self.bytes_read += n as u64;
        self.filled += n;
        self.eof = n == 0;
        Ok(n > 0)
    }

    /// Reads the next record. Blank lines are skipped.
    pub fn next_record(&mut self) -> io::Result<Next> {
        loop {
            if self.pos == self.filled && !self.fill()? {
                return Ok(Next::End);
            }
            if !self.bom_checked {
                while self.filled - self.pos < 3 && self.fill()? {}
                if self.input[self.pos..self.filled].starts_with(b"\xef\xbb\xbf") {
                    self.pos += 3;
                }
                self.bom_checked = true;
                continue;
            }
            let avail = &self.input[self.pos..self.filled];
            if self.cr_pending {
                // A carriage return ended the last line; on its own (not CR LF) it counts as a line break.
                self.cr_pending = false;
                if avail[0] != b'\n' {
                    self.line += 1;
                }
            }
            match avail[0] {
                b'\n' => {
                    self.pos += 1;
                    self.line += 1;
                    continue;
                }
                b'\r' => {
                    self.pos += 1;
                    self.cr_pending = true;
                    continue;
                }
                _ => {}
            }
            // One pass over the line: where it ends, where its commas are, whether it needs the full parser.
            let ends = &mut self.ends;
            let mut commas = 0;
            let mut too_many = false;
            let mut nul = false;
            let mut stop = None;
            for (i, &b) in avail.iter().enumerate() {
                match CLASS[b as usize] {
                    ORDINARY => {}
                    COMMA if commas + 1 >= self.max_fields => too_many = true,
                    COMMA => {
                        if commas == ends.len() {
                            let grown = (ends.len() * 2).min(self.max_fields);
                            ends.resize(grown, 0);
                        }
                        ends[commas] = i;
                        commas += 1;
                    }
                    NUL => nul = true,
                    class => {
                        stop = Some((class, i));
                        break;
                    }
                }
            }
            let (len, consumed) = match stop {
                Some((LF, at)) => (at, at + 1),
                Some((CR, at)) if at + 1 < avail.len() && avail[at + 1] == b'\n' => (at, at + 2),
                // A carriage return at the end of what was read may be half of a CRLF: read on before deciding.
                Some((CR, at))
                    if at + 1 == avail.len()
                        && !self.eof
                        && (self.pos > 0 || self.filled < self.input.len()) =>
                {
                    self.fill()?;
                    continue;
                }
                // A quote, or a lone carriage return ending the record.
                Some(_) => return self.parsed(),
                None if self.eof => (avail.len(), avail.len()),
                None if self.pos == 0 && self.filled == self.input.len() => {
                    // A line longer than the buffer: the full parser bounds it.
                    return self.parsed();
                }
                None => {
                    self.fill()?;
                    continue;
                }
            };
            return Ok(self.in_place(len, consumed, commas, too_many, nul));
        }
    }

    /// Takes the quote-free line of `len` bytes at `pos` as the record (its commas already in `ends`),
    /// consuming `consumed` bytes.
    fn in_place(
        &mut self,
        len: usize,
        consumed: usize,
        commas: usize,
        too_many: bool,
        nul: bool,
    ) -> Next {
        let line = self.line;
        let start = self.pos;
        self.pos += consumed;
        if consumed > len {
            self.line += 1;
        }
        if len > self.max_record_bytes {
            self.nfields = 0;
            return Next::TooLong { line };
        }
        if too_many {
            self.nfields = 0;
            return Next::TooManyFields { line };
        }
        if commas == self.ends.len() {
            self.ends.push(0);
        }
        self.ends[commas] = len;
        self.nfields = commas + 1;
        self.record_len = len;
        self.nul = nul;
        self.held = Held::InPlace(start);
        Next::Record { line }
    }

    /// Reads one record with the full parser (quotes, lone carriage returns, very long lines).
    fn parsed(&mut self) -> io::Result<Next> {
        self.core.reset();
        let start_line = self.line;
        let mut outlen = 0;
        let mut nends = 0;
        let mut too_long = false;
        let mut too_many = false;
        loop {
            if self.pos == self.filled {
                self.pos = 0;
                self.filled = 0;
                self.fill()?;
            }
            let input = &self.input[self.pos..self.filled];
            let (res, nin, nout, nend) =
                self.core
                    .read_record(input, &mut self.out[outlen..], &mut self.ends[nends..]);
            let (breaks, cr_at_end) = count_line_breaks(&input[..nin], self.cr_pending);
            self.line += breaks;
            self.cr_pending = cr_at_end;
            self.pos += nin;
            outlen += nout;
            nends += nend;
            match res {
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull => {
                    if self.out.len() < self.max_record_bytes {
                        let grown = (self.out.len() * 2).min(self.max_record_bytes);
                        self.out.resize(grown, 0);
                    } else {
                        // Keep consuming the oversized record into the same space until it ends.
                        too_long = true;
                        outlen = 0;
                        nends = 0;
                    }
                }
                ReadRecordResult::OutputEndsFull => {
                    if self.ends.len() < self.max_fields {
                        let grown = (self.ends.len() * 2).min(self.max_fields);
                        self.ends.resize(grown, 0);
                    } else {
                        too_many = true;
                        outlen = 0;
                        nends = 0;
                    }
                }
                ReadRecordResult::Record => {
                    // A skipped record leaves nothing readable behind.
                    self.held = Held::Parsed;
                    self.nfields = if too_long || too_many { 0 } else { nends };
                    self.record_len = if self.nfields == 0 {
                        0
                    } else {
                        self.ends[nends - 1]
                    };
                    return Ok(if too_long {
                        Next::TooLong { line: start_line }
                    } else if too_many {
                        Next::TooManyFields { line: start_line }
                    } else {
                        Next::Record { line: start_line }
                    });
                }
                ReadRecordResult::End => return Ok(Next::End),
            }
        }
    }

    /// Whether the current record holds a NUL byte anywhere.
    pub fn has_nul(&self) -> bool {
        self.nul
    }

    /// Number of fields in the current record.
    pub fn len(&self) -> usize {
        self.nfields
    }

    pub fn is_empty(&self) -> bool {
        self.nfields == 0
    }

    /// Byte range of field `i` within [`RecordReader::record_bytes`]; empty when the record is shorter.
    pub fn field_range(&self, i: usize) -> (usize, usize) {
        if i >= self.nfields {
            return (0, 0);
        }
        let end = self.ends[i];
        let start = match (i, self.held) {
            (0, _) => 0,
            // In place, the previous field ends at its comma.
            (_, Held::InPlace(_)) => self.ends[i - 1] + 1,
            (_, Held::Parsed) => self.ends[i - 1],
        };
        (start, end)
    }

    /// Field `i` of the current record; empty when the record is shorter.
    pub fn field(&self, i: usize) -> &[u8] {
        let (start, end) = self.field_range(i);
        self.record_bytes().get(start..end).unwrap_or(&[])
    }

    /// The current record's bytes: the line itself for a quote-free line, else the unquoted fields back to back.
    pub fn record_bytes(&self) -> &[u8] {
        match self.held {
            Held::InPlace(start) => self
                .input
                .get(start..start + self.record_len)
                .unwrap_or(&[]),
            Held::Parsed => self.out.get(..self.record_len).unwrap_or(&[]),
        }
    }
}

/// Line breaks in consumed bytes: every LF, and every CR not followed by LF. `cr_before` says the byte before
/// was a CR; the second value says whether these bytes end with a CR (whose meaning the next byte decides).
fn count_line_breaks(bytes: &[u8], cr_before: bool) -> (u64, bool) {
    let mut breaks = 0;
    let mut cr = cr_before;
    for &b in bytes {
        match b {
            b'\n' => {
                breaks += 1;
                cr = false;
            }
            b'\r' => {
                if cr {
                    breaks += 1;
                }
                cr = true;
            }
            _ => {
                if cr {
                    breaks += 1;
                }
                cr = false;
            }
        }
    }
    (breaks, cr)
}

fn read_some<R: Read>(src: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match src.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out its bytes a few at a time, so records straddle every read boundary.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.1.min(buf.len()).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn records_from<R: Read>(
        src: R,
        max_record: usize,
        max_fields: usize,
    ) -> Vec<(Next, Vec<String>)> {
        let mut r = RecordReader::new(src, max_record, max_fields);
        let mut out = Vec::new();
        loop {
            let next = r.next_record().expect("in-memory read");
            if next == Next::End {
                return out;
            }
            let fields = (0..r.len())
                .map(|i| String::from_utf8_lossy(r.field(i)).into_owned())
                .collect();
            out.push((next, fields));
        }
    }

    fn records(input: &[u8], max_record: usize, max_fields: usize) -> Vec<(Next, Vec<String>)> {
        let whole = records_from(input, max_record, max_fields);
        for step in [1, 2, 3, 7] {
            let trickled = records_from(Trickle(input, step), max_record, max_fields);
            assert_eq!(
                format!("{whole:?}"),
                format!("{trickled:?}"),
                "reading {step} bytes at a time"
            );
        }
        whole
    }

    #[test]
    fn lines_are_counted_for_lf_crlf_bom_blank_lines_and_quoted_newlines() {
        let got = records(
            b"\xef\xbb\xbfa,b\r\n1,2\r\n\r\n\"x\ny\",3\n4,\"\"\n",
            1 << 20,
            100,
        );
        let lines: Vec<_> = got.iter().map(|(n, _)| format!("{n:?}")).collect();
        assert_eq!(
            lines,
            [
                "Record { line: 1 }",
                "Record { line: 2 }",
                "Record { line: 4 }",
                "Record { line: 6 }"
            ]
        );
        assert_eq!(got[0].1, ["a", "b"]);
        assert_eq!(got[2].1, ["x\ny", "3"]);
        assert_eq!(got[3].1, ["4", ""]);
    }

    #[test]
    fn quoted_commas_and_escaped_quotes_are_unquoted() {
        let got = records(b"a,\"b,c\",\"say \"\"hi\"\"\"\r\n,,\n", 1 << 20, 100);
        assert_eq!(got[0].1, ["a", "b,c", "say \"hi\""]);
        assert_eq!(got[1].1, ["", "", ""]);
    }

    #[test]
    fn lone_carriage_returns_end_records_and_lines() {
        let got = records(b"a,b\rc,d\r\re,\"f\"\rg,h", 1 << 20, 100);
        let fields: Vec<_> = got.iter().map(|(_, f)| f.join("|")).collect();
        assert_eq!(fields, ["a|b", "c|d", "e|f", "g|h"]);
        let lines: Vec<_> = got.iter().map(|(n, _)| format!("{n:?}")).collect();
        assert_eq!(
            lines,
            [
                "Record { line: 1 }",
                "Record { line: 2 }",
                "Record { line: 4 }",
                "Record { line: 5 }"
            ]
        );
    }

    #[test]
    fn last_line_without_terminator_is_read() {
        let got = records(b"a,b\n1,2", 1 << 20, 100);
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].1, ["1", "2"]);
    }

    #[test]
    fn an_oversized_record_is_skipped_and_reading_goes_on() {
        let mut input = b"a,b\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 10_000));
        input.extend(b",1\nc,d\n\"q\",r\n");
        input.extend(std::iter::repeat_n(b'y', 10_000));
        input.extend(b"\"\nlast,one\n");
        let got = records(&input, 1000, 100);
        assert_eq!(got[1].0, Next::TooLong { line: 2 });
        assert_eq!(got[2].0, Next::Record { line: 3 });
        assert_eq!(got[2].1, ["c", "d"]);
        assert_eq!(got[3].1, ["q", "r"]);
        assert_eq!(got[4].0, Next::TooLong { line: 5 });
        assert_eq!(got[5].1, ["last", "one"]);
    }

    #[test]
    fn a_line_longer_than_the_buffer_is_still_read() {
        let mut input = b"h\n".to_vec();
        let long = "z".repeat(INPUT_BUFFER + 10);
        input.extend(long.as_bytes());
        input.extend(b",2\nend\n");
        let got = records_from(&input[..], 1 << 20, 100);
        assert_eq!(got[1].1, [long.as_str(), "2"]);
        assert_eq!(got[2].0, Next::Record { line: 3 });
    }

    #[test]
    fn too_many_fields_are_skipped() {
        let mut input = b"a\n".to_vec();
        input.extend(",".repeat(5000).as_bytes());
        input.extend(b"\nz\n\"q\"");
        input.extend(",".repeat(5000).as_bytes());
        input.extend(b"\ny\n");
        let got = records(&input, 1 << 20, 100);
        assert_eq!(got[1].0, Next::TooManyFields { line: 2 });
        assert_eq!(got[2].1, ["z"]);
        assert_eq!(got[3].0, Next::TooManyFields { line: 4 });
        assert_eq!(got[4].1, ["y"]);
    }

    #[test]
    fn record_bytes_and_ranges_agree_on_both_paths() {
        for input in [&b"ab,cd,,e\n"[..], &b"\"ab\",cd,,e\n"[..]] {
            let mut r = RecordReader::new(input, 1 << 20, 100);
            assert_eq!(r.next_record().expect("read"), Next::Record { line: 1 });
            let whole = r.record_bytes().to_vec();
            let fields: Vec<&[u8]> = (0..r.len())
                .map(|i| {
                    let (s, e) = r.field_range(i);
                    &whole[s..e]
                })
                .collect();
            assert_eq!(fields, [&b"ab"[..], b"cd", b"", b"e"]);
        }
    }
}
