//! A streaming CSV record reader with bounded memory. It reuses one record buffer for every row, knows the line
//! each record starts on, skips a UTF-8 byte-order mark, accepts LF and CRLF, and refuses to grow past the
//! configured row size or field count: an oversized row is skipped whole and reported, never buffered.

use csv_core::{ReadRecordResult, Reader, ReaderBuilder, Terminator};
use std::io::{self, Read};

const INPUT_BUFFER: usize = 256 << 10;

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

/// Reads CSV records from any byte source, one at a time, into a reused buffer.
pub struct RecordReader<R> {
    core: Reader,
    src: R,
    input: Box<[u8]>,
    pos: usize,
    len: usize,
    eof: bool,
    out: Vec<u8>,
    ends: Vec<usize>,
    nfields: usize,
    max_record_bytes: usize,
    max_fields: usize,
    bytes_read: u64,
    lines_seen: u64,
}

impl<R: Read> RecordReader<R> {
    pub fn new(src: R, max_record_bytes: usize, max_fields: usize) -> RecordReader<R> {
        RecordReader {
            core: ReaderBuilder::new().terminator(Terminator::CRLF).build(),
            src,
            input: vec![0; INPUT_BUFFER].into_boxed_slice(),
            pos: 0,
            len: 0,
            eof: false,
            out: vec![0; 4096.min(max_record_bytes.max(1))],
            ends: vec![0; 64.min(max_fields.max(1))],
            nfields: 0,
            max_record_bytes: max_record_bytes.max(1),
            max_fields: max_fields.max(1),
            bytes_read: 0,
            lines_seen: 1,
        }
    }

    /// Bytes consumed from the source so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// Reads the next record. Blank lines are skipped.
    pub fn next_record(&mut self) -> io::Result<Next> {
        let mut outlen = 0;
        let mut nends = 0;
        let mut too_long = false;
        let mut too_many = false;
        let mut start_line: Option<u64> = None;
        loop {
            if self.pos == self.len && !self.eof {
                self.len = read_some(&mut self.src, &mut self.input)?;
                self.pos = 0;
                self.bytes_read += self.len as u64;
                self.eof = self.len == 0;
            }
            let input = &self.input[self.pos..self.len];
            // The record starts at the first byte that is not a line terminator left over from the last one.
            if start_line.is_none() {
                if let Some(first) = input.iter().position(|&b| b != b'\n' && b != b'\r') {
                    start_line = Some(self.lines_seen + count_newlines(&input[..first]));
                }
            }
            let (res, nin, nout, nend) =
                self.core
                    .read_record(input, &mut self.out[outlen..], &mut self.ends[nends..]);
            self.lines_seen += count_newlines(&input[..nin]);
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
                    let line = start_line.unwrap_or(self.lines_seen);
                    // A skipped record leaves nothing readable behind.
                    self.nfields = if too_long || too_many { 0 } else { nends };
                    return Ok(if too_long {
                        Next::TooLong { line }
                    } else if too_many {
                        Next::TooManyFields { line }
                    } else {
                        Next::Record { line }
                    });
                }
                ReadRecordResult::End => return Ok(Next::End),
            }
        }
    }

    /// Number of fields in the current record.
    pub fn len(&self) -> usize {
        self.nfields
    }

    pub fn is_empty(&self) -> bool {
        self.nfields == 0
    }

    /// Field `i` of the current record; empty when the record is shorter.
    pub fn field(&self, i: usize) -> &[u8] {
        if i >= self.nfields {
            return &[];
        }
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.out.get(start..self.ends[i]).unwrap_or(&[])
    }

    /// All bytes of the current record's fields, back to back.
    pub fn record_bytes(&self) -> &[u8] {
        let end = if self.nfields == 0 {
            0
        } else {
            self.ends[self.nfields - 1]
        };
        self.out.get(..end).unwrap_or(&[])
    }
}

fn count_newlines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
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

    fn records(input: &[u8], max_record: usize, max_fields: usize) -> Vec<(Next, Vec<String>)> {
        let mut r = RecordReader::new(input, max_record, max_fields);
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
    fn last_line_without_terminator_is_read() {
        let got = records(b"a,b\n1,2", 1 << 20, 100);
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].1, ["1", "2"]);
    }

    #[test]
    fn an_oversized_record_is_skipped_and_reading_goes_on() {
        let mut input = b"a,b\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 10_000));
        input.extend(b",1\nc,d\n");
        let got = records(&input, 1000, 100);
        assert_eq!(got[1].0, Next::TooLong { line: 2 });
        assert_eq!(got[2].0, Next::Record { line: 3 });
        assert_eq!(got[2].1, ["c", "d"]);
    }

    #[test]
    fn too_many_fields_are_skipped() {
        let mut input = b"a\n".to_vec();
        input.extend(",".repeat(5000).as_bytes());
        input.extend(b"\nz\n");
        let got = records(&input, 1 << 20, 100);
        assert_eq!(got[1].0, Next::TooManyFields { line: 2 });
        assert_eq!(got[2].1, ["z"]);
    }
}
