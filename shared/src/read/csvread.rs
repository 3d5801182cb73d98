//! A streaming CSV record reader with bounded memory. It knows the line each record starts on, skips a UTF-8
//! byte-order mark, accepts LF and CRLF, and refuses to grow past the configured row size or field count: an
//! oversized row is skipped whole and reported, never buffered.
//!
//! [`RecordReader::read_batch`] fills a batch of records for validation. Runs of lines are split in bulk
//! straight from the input buffer, 64 bytes at a time (SSE2 on x86-64, machine words elsewhere): one pass finds
//! the line ends and commas and notes whether each row is plain ASCII free of spaces (so ids need no
//! byte-by-byte check). A line whose quotes are simple (a quoted field opens after a comma and closes before
//! one) is unquoted on the way. Any other line (escaped quotes, line breaks inside quotes, a lone carriage
//! return, a limit reached, a line past the bytes buffered) goes through [`RecordReader::next_record`], which
//! splits quote-free lines in place and hands the rest to `csv_core`'s full RFC 4180 parser.

use csv_core::{ReadRecordResult, Reader, ReaderBuilder, Terminator};
use std::io::{self, Read};

const INPUT_BUFFER: usize = 256 << 10;

/// What kinds of bytes a record holds, found while it is split.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    /// ASCII with no NUL byte: valid UTF-8 with nothing to flag.
    pub plain: bool,
    /// Plain, split in place, and without spaces or control characters: every field has only the bytes an id
    /// may have.
    pub bare: bool,
    /// A line break inside a quoted field (only a record the full parser unquoted can hold one).
    pub breaks: bool,
}

impl Flags {
    /// A line split in place: `plain` when it has no byte of 0x80 and up and no NUL, `bare` when, besides, it
    /// has no byte an id may not have.
    fn split(plain: bool, no_odd_bytes: bool) -> Flags {
        Flags {
            plain,
            bare: plain && no_odd_bytes,
            breaks: false,
        }
    }

    /// Fields unquoted back to back: quoted fields may hold commas and quotes, so never bare.
    fn unquoted(bytes: &[u8]) -> Flags {
        Flags {
            plain: bytes.is_ascii() && memchr::memchr(0, bytes).is_none(),
            bare: false,
            breaks: memchr::memchr2(b'\n', b'\r', bytes).is_some(),
        }
    }
}

/// Bytes looked at in one step of [`scan_line`] (lines are short: a small step stops close to the line end).
const BLOCK: usize = 16;

/// Bytes looked at in one step of [`RecordReader::read_batch`], which splits many lines in one pass.
const WIDE: usize = 4 * BLOCK;

/// Most fields of a record that [`RecordReader::read_batch`] splits in bulk; a wider one takes the careful path.
const BULK_FIELDS: usize = 64;

/// Where the bytes that matter are in one block: bit `k` of each mask stands for byte `k`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Masks {
    commas: u64,
    /// Line feeds, carriage returns and quotes: where a quote-free line stops.
    stops: u64,
    /// 0x80 and up (not ASCII).
    high: u64,
    nul: u64,
    /// Bytes no id has: below 0x21 (space and controls), 0x7f and up.
    odd: u64,
}

impl Masks {
    /// Adds the masks of a part that starts `shift` bytes in.
    fn place(&mut self, part: Masks, shift: usize) {
        self.commas |= part.commas << shift;
        self.stops |= part.stops << shift;
        self.high |= part.high << shift;
        self.nul |= part.nul << shift;
        self.odd |= part.odd << shift;
    }
}

/// The masks of [`WIDE`] bytes, from those of its blocks.
fn wide_masks(bytes: &[u8; WIDE]) -> Masks {
    let mut wide = Masks::default();
    for (i, block) in bytes.chunks_exact(BLOCK).enumerate() {
        if let Ok(block) = <&[u8; BLOCK]>::try_from(block) {
            wide.place(masks(block), BLOCK * i);
        }
    }
    wide
}

/// The masks of a block, sixteen bytes at once with SSE2 (which every x86-64 processor has).
#[cfg(target_arch = "x86_64")]
fn masks(block: &[u8; BLOCK]) -> Masks {
    use safe_arch::{
        bitor_m128i, cmp_eq_mask_i8_m128i, cmp_lt_mask_i8_m128i, load_unaligned_m128i,
        move_mask_i8_m128i, set_splat_i8_m128i,
    };
    let v = load_unaligned_m128i(block);
    let eq = |c: u8| cmp_eq_mask_i8_m128i(v, set_splat_i8_m128i(c as i8));
    let bits = |m| u64::from(move_mask_i8_m128i(m) as u16);
    let stops = bitor_m128i(bitor_m128i(eq(b'\n'), eq(b'\r')), eq(b'"'));
    // Compared as signed bytes, 0x80 and up are below 0x21 too.
    let odd = bitor_m128i(cmp_lt_mask_i8_m128i(v, set_splat_i8_m128i(0x21)), eq(0x7f));
    Masks {
        commas: bits(eq(b',')),
        stops: bits(stops),
        high: bits(v),
        nul: bits(eq(0)),
        odd: bits(odd),
    }
}

/// The masks of a block, on processors without SSE2.
#[cfg(not(target_arch = "x86_64"))]
fn masks(block: &[u8; BLOCK]) -> Masks {
    masks_by_words(block)
}

/// The masks of a block, eight bytes at a time in a machine word.
#[cfg(any(test, not(target_arch = "x86_64")))]
fn masks_by_words(block: &[u8; BLOCK]) -> Masks {
    let mut m = Masks::default();
    for (half, bytes) in block.chunks_exact(8).enumerate() {
        let mut word = [0; 8];
        word.copy_from_slice(bytes);
        let w = swar::Word(u64::from_le_bytes(word));
        let part = Masks {
            commas: w.equal(b',').packed(),
            stops: (w.equal(b'\n') | w.equal(b'\r') | w.equal(b'"')).packed(),
            high: swar::Word(w.0 & swar::HIGHS).packed(),
            nul: w.equal(0).packed(),
            odd: (w.below(0x21) | w.from(0x7f)).packed(),
        };
        m.place(part, 8 * half);
    }
    m
}

/// Byte tests on eight bytes in a machine word (no carries cross from one byte into the next).
#[cfg(any(test, not(target_arch = "x86_64")))]
mod swar {
    const ONES: u64 = 0x0101_0101_0101_0101;
    pub const HIGHS: u64 = 0x8080_8080_8080_8080;
    const LOWS: u64 = 0x7f7f_7f7f_7f7f_7f7f;

    /// Eight bytes; a test's answer has the high bit of each byte that passed.
    #[derive(Clone, Copy)]
    pub struct Word(pub u64);

    impl std::ops::BitOr for Word {
        type Output = Word;
        fn bitor(self, other: Word) -> Word {
            Word(self.0 | other.0)
        }
    }

    impl Word {
        /// Bytes equal to `c`.
        pub fn equal(self, c: u8) -> Word {
            let x = self.0 ^ (ONES * u64::from(c));
            Word(!(((x & LOWS) + LOWS) | x) & HIGHS)
        }

        /// Bytes below `n` (at most 0x80).
        pub fn below(self, n: u8) -> Word {
            Word(!(((self.0 & LOWS) + ONES * u64::from(0x80 - n)) | self.0) & HIGHS)
        }

        /// Bytes at `n` (at least 0x01) and up.
        pub fn from(self, n: u8) -> Word {
            Word((((self.0 & LOWS) + ONES * u64::from(0x80 - n)) | self.0) & HIGHS)
        }

        /// One bit per byte: bit `k` is byte `k`'s high bit.
        pub fn packed(self) -> u64 {
            (self.0 >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56
        }
    }
}

/// The bits of a mask below bit `k` (`k` at most 64).
fn bits_below(k: usize) -> u64 {
    u64::MAX.checked_shr(64 - k as u32).unwrap_or(0)
}

/// What one pass over the start of the buffered input found.
struct Scan {
    /// The first line feed, carriage return or quote, and where.
    stop: Option<(u8, usize)>,
    /// Commas before the stop (their offsets are in `ends`), up to the field limit.
    commas: usize,
    /// There were more commas than the field limit allows.
    too_many: bool,
    /// What kinds of bytes come before the stop.
    flags: Flags,
}

/// Scans `avail` a block at a time for the end of the line, its commas and the kinds of bytes in it (no
/// byte-by-byte loop, no branch per comma: quote-free lines are nearly all a file has).
fn scan_line(avail: &[u8], ends: &mut Vec<usize>, max_fields: usize) -> Scan {
    let mut scan = Scan {
        stop: None,
        commas: 0,
        too_many: false,
        flags: Flags::default(),
    };
    let (mut high, mut nul, mut odd) = (0u64, 0u64, 0u64);
    let mut at = 0;
    while at < avail.len() {
        let m = match avail
            .get(at..at + BLOCK)
            .and_then(|b| <&[u8; BLOCK]>::try_from(b).ok())
        {
            Some(block) => masks(block),
            None => {
                // The last few bytes, padded with a byte that matches nothing.
                let mut block = [b'a'; BLOCK];
                block[..avail.len() - at].copy_from_slice(&avail[at..]);
                masks(&block)
            }
        };
        // Only the bytes before the stop belong to the line.
        let mut keep = u64::MAX;
        if m.stops != 0 {
            let k = m.stops.trailing_zeros() as usize;
            keep = bits_below(k);
            scan.stop = Some((avail[at + k], at + k));
        }
        high |= m.high & keep;
        nul |= m.nul & keep;
        odd |= m.odd & keep;
        let mut commas = m.commas & keep;
        if scan.commas + BLOCK < max_fields && scan.commas + BLOCK <= ends.len() {
            // Without a branch per comma (their number per block is anyone's guess): four offsets are written
            // whether or not there are that many commas, and only as many as there are are counted.
            let mut n = scan.commas;
            for _ in 0..4 {
                ends[n] = at + commas.trailing_zeros() as usize;
                n += usize::from(commas != 0);
                commas &= commas.wrapping_sub(1);
            }
            while commas != 0 {
                ends[n] = at + commas.trailing_zeros() as usize;
                n += 1;
                commas &= commas - 1;
            }
            scan.commas = n;
        } else {
            while commas != 0 {
                if scan.commas + 1 >= max_fields {
                    scan.too_many = true;
                    break;
                }
                if scan.commas == ends.len() {
                    let grown = (ends.len() * 2).max(scan.commas + BLOCK).min(max_fields);
                    ends.resize(grown, 0);
                }
                ends[scan.commas] = at + commas.trailing_zeros() as usize;
                scan.commas += 1;
                commas &= commas - 1;
            }
        }
        if scan.stop.is_some() {
            break;
        }
        at += BLOCK;
    }
    scan.flags = Flags::split(high | nul == 0, odd == 0);
    scan
}

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
    /// What kinds of bytes the current record holds.
    flags: Flags,
    max_record_bytes: usize,
    max_fields: usize,
    bytes_read: u64,
    /// Line number of the byte at `pos`.
    line: u64,
    /// The last byte consumed was a carriage return.
    cr_pending: bool,
    /// Comma offsets of the record being split in bulk (room for a step's worth past [`BULK_FIELDS`]).
    bulk_commas: Vec<u32>,
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
            flags: Flags::default(),
            max_record_bytes: max_record_bytes.max(1),
            max_fields: max_fields.max(1),
            bytes_read: 0,
            line: 1,
            cr_pending: false,
            bulk_commas: vec![0; BULK_FIELDS + WIDE],
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
            if self.cr_pending {
                self.settle_cr();
                continue;
            }
            let avail = &self.input[self.pos..self.filled];
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
            let scan = scan_line(
                &self.input[self.pos..self.filled],
                &mut self.ends,
                self.max_fields,
            );
            let avail = &self.input[self.pos..self.filled];
            let (len, consumed) = match scan.stop {
                Some((b'\n', at)) => (at, at + 1),
                Some((b'\r', at)) if at + 1 < avail.len() && avail[at + 1] == b'\n' => (at, at + 2),
                // A carriage return at the end of what was read may be half of a CRLF: read on before deciding.
                Some((b'\r', at))
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
            return Ok(self.in_place(len, consumed, scan.commas, scan.too_many, scan.flags));
        }
    }

    /// Settles the carriage return that ended the last record, once the byte after it is buffered: it is one
    /// line break, and a line feed right after it belongs to it.
    fn settle_cr(&mut self) {
        if self.cr_pending && self.pos < self.filled {
            self.cr_pending = false;
            self.line += 1;
            if self.input[self.pos] == b'\n' {
                self.pos += 1;
            }
        }
    }

    /// Reads records into `batch` until it holds `max_rows` of them or `max_bytes` of record data, or the input
    /// ends. Returns false once the input has ended. The records are the ones [`RecordReader::next_record`]
    /// would give one by one; runs of plain lines are split in bulk, straight from the input buffer.
    pub fn read_batch(
        &mut self,
        batch: &mut Records,
        max_rows: usize,
        max_bytes: usize,
    ) -> io::Result<bool> {
        while batch.len() < max_rows && batch.data_len() < max_bytes {
            self.settle_cr();
            if self.bom_checked
                && !self.cr_pending
                && self.pos < self.filled
                && self.bulk(batch, max_rows, max_bytes)
            {
                break;
            }
            // The line bulk splitting stopped at: past the bytes buffered, or one for the careful path.
            let next = self.next_record()?;
            if next == Next::End {
                return Ok(false);
            }
            batch.push(&next, self);
        }
        Ok(true)
    }

    /// Splits the lines at the start of the buffered input into `batch`, 64 bytes at a time with no work per
    /// line beyond noting where it ends (a line with simple quotes is unquoted on the way). It stops at the
    /// first line that needs [`RecordReader::next_record`]: one with other quotes or a lone carriage return,
    /// one over a limit, or one that runs past the bytes buffered. Returns true when the batch is full.
    fn bulk(&mut self, batch: &mut Records, max_rows: usize, max_bytes: usize) -> bool {
        let avail = &self.input[self.pos..self.filled];
        // Offsets in a batch are 32-bit; a batch is flushed long before that (and unquoting only shrinks).
        if batch.bytes.len() + avail.len() > u32::MAX as usize {
            return false;
        }
        // Plain lines are copied to the batch in runs: bytes from `copied` on will sit at `base` and after.
        let (mut copied, mut base) = (0, batch.bytes.len());
        let commas = &mut self.bulk_commas;
        let most_commas = self.max_fields.min(BULK_FIELDS) - 1;
        // The record being split: where it starts, its commas so far, what kinds of bytes it has.
        let mut start = 0;
        let mut n = 0;
        let (mut not_plain, mut odd) = (0u64, 0u64);
        let mut line = self.line;
        let mut full = false;
        let mut at = 0;
        'blocks: while let Some(bytes) = avail
            .get(at..at + WIDE)
            .and_then(|b| <&[u8; WIDE]>::try_from(b).ok())
        {
            let m = wide_masks(bytes);
            let mut stops = m.stops;
            loop {
                // The record's bytes in this block run from its start (or the block's) to the next stop (or
                // the block's end).
                let end = if stops == 0 {
                    WIDE
                } else {
                    stops.trailing_zeros() as usize
                };
                // A line feed that ended the last record along with its carriage return.
                if stops != 0 && at + end < start {
                    stops &= stops - 1;
                    continue;
                }
                let from = start.saturating_sub(at).min(end);
                let mine = bits_below(end) & !bits_below(from);
                not_plain |= (m.high | m.nul) & mine;
                odd |= m.odd & mine;
                if n > BULK_FIELDS {
                    break 'blocks;
                }
                // Eight offsets are written whether or not there are that many commas (no branch per comma),
                // and the count moves on by as many as there are: no write waits for the one before.
                let mut c = m.commas & mine;
                let mut found = 0;
                if let Some(slots) = commas.get_mut(n..n + 8) {
                    for slot in slots {
                        *slot = (at + c.trailing_zeros() as usize) as u32;
                        found += usize::from(c != 0);
                        c &= c.wrapping_sub(1);
                    }
                }
                while c != 0 {
                    commas[n + found] = (at + c.trailing_zeros() as usize) as u32;
                    found += 1;
                    c &= c - 1;
                }
                n += found;
                if stops == 0 {
                    break;
                }
                let stop = at + end;
                let next = match avail[stop] {
                    b'\n' => stop + 1,
                    b'\r' if avail.get(stop + 1) == Some(&b'\n') => stop + 2,
                    b'"' => {
                        // A quoted line: the run so far goes to the batch, then this line unquoted.
                        batch.bytes.extend_from_slice(&avail[copied..start]);
                        let Some(used) = batch.push_unquoted(
                            line,
                            &avail[start..],
                            self.max_fields,
                            self.max_record_bytes,
                        ) else {
                            copied = start;
                            break 'blocks;
                        };
                        line += 1;
                        start += used;
                        n = 0;
                        (not_plain, odd) = (0, 0);
                        (copied, base) = (start, batch.bytes.len());
                        if batch.len() >= max_rows || base >= max_bytes {
                            full = true;
                            break 'blocks;
                        }
                        // Carry on from the block the next line starts in.
                        at = start - start % WIDE;
                        continue 'blocks;
                    }
                    // A lone carriage return, or one whose line feed is not read yet.
                    _ => break 'blocks,
                };
                if n > most_commas || stop - start > self.max_record_bytes {
                    break 'blocks;
                }
                if stop > start {
                    let flags = Flags::split(not_plain == 0, odd == 0);
                    let split = commas[..n].iter().map(|&c| c - start as u32);
                    let at_batch = base + start - copied;
                    batch.push_split(line, at_batch, at_batch + stop - start, split, flags);
                }
                line += 1;
                start = next;
                n = 0;
                (not_plain, odd) = (0, 0);
                if batch.len() >= max_rows || base + start - copied >= max_bytes {
                    full = true;
                    break 'blocks;
                }
                stops &= stops - 1;
            }
            at += WIDE;
        }
        // Everything before `start` is split: the rest of the run goes to the batch.
        batch.bytes.extend_from_slice(&avail[copied..start]);
        self.pos += start;
        self.line = line;
        full
    }

    /// Takes the quote-free line of `len` bytes at `pos` as the record (its commas already in `ends`),
    /// consuming `consumed` bytes.
    fn in_place(
        &mut self,
        len: usize,
        consumed: usize,
        commas: usize,
        too_many: bool,
        flags: Flags,
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
        self.flags = flags;
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
                    self.flags = Flags::unquoted(&self.out[..self.record_len]);
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

    /// What kinds of bytes the current record holds.
    pub fn flags(&self) -> Flags {
        self.flags
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

    /// Where each field of the current record ends, and the bytes between one field's end and the next one's
    /// start.
    pub fn field_ends(&self) -> (&[usize], usize) {
        let gap = match self.held {
            Held::InPlace(_) => 1,
            Held::Parsed => 0,
        };
        (self.ends.get(..self.nfields).unwrap_or(&[]), gap)
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

/// How a record in a [`Records`] batch was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Read,
    /// Longer than the row limit: skipped, nothing kept.
    TooLong,
    /// More fields than the limit: skipped, nothing kept.
    TooManyFields,
}

/// Where one record of a batch is.
#[derive(Clone, Copy)]
struct Entry {
    line: u64,
    outcome: Outcome,
    /// Range of [`Records::bytes`].
    start: u32,
    end: u32,
    /// Range of [`Records::ends`].
    first_field: u32,
    fields: u32,
    /// Bytes between one field's end and the next one's start (the comma of a line split in place).
    gap: u32,
    flags: Flags,
}

/// Records copied out of a reader, so that other threads can check them while it reads on. Memory is kept
/// across [`Records::clear`], so a batch passed round and round allocates once.
#[derive(Default)]
pub struct Records {
    bytes: Vec<u8>,
    /// Where each field ends, relative to its record's start.
    ends: Vec<u32>,
    entries: Vec<Entry>,
    /// Bytes of the source read when the batch was full, for progress.
    pub bytes_read: u64,
}

impl Records {
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
        self.entries.clear();
        self.bytes_read = 0;
    }

    /// Records in the batch.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of record data held.
    pub fn data_len(&self) -> usize {
        self.bytes.len()
    }

    /// All records' bytes back to back; [`RecordView::offset`] says where each starts.
    pub fn data(&self) -> &[u8] {
        &self.bytes
    }

    /// Copies what `next` (the reader's last answer) found: the record itself, or that it was skipped.
    pub fn push<R: Read>(&mut self, next: &Next, reader: &RecordReader<R>) {
        let (line, mut outcome) = match *next {
            Next::Record { line } => (line, Outcome::Read),
            Next::TooLong { line } => (line, Outcome::TooLong),
            Next::TooManyFields { line } => (line, Outcome::TooManyFields),
            Next::End => return,
        };
        let record = reader.record_bytes();
        // Offsets are 32-bit; a batch is flushed long before that, so only an absurd single row hits this.
        if outcome == Outcome::Read && self.bytes.len() + record.len() > u32::MAX as usize {
            outcome = Outcome::TooLong;
        }
        let start = self.bytes.len() as u32;
        let first_field = self.ends.len() as u32;
        let mut fields = 0;
        let (ends, gap) = reader.field_ends();
        if outcome == Outcome::Read {
            self.bytes.extend_from_slice(record);
            fields = ends.len() as u32;
            self.ends.extend(ends.iter().map(|&e| e as u32));
        }
        self.entries.push(Entry {
            line,
            outcome,
            start,
            end: self.bytes.len() as u32,
            first_field,
            fields,
            gap: gap as u32,
            // A skipped record has no bytes to describe.
            flags: if outcome == Outcome::Read {
                reader.flags()
            } else {
                Flags::default()
            },
        });
    }

    /// Adds a line split in bulk: its bytes will be `start..end` of the record data (the caller copies them
    /// in), and `commas` are the offsets of its commas from its start.
    fn push_split(
        &mut self,
        line: u64,
        start: usize,
        end: usize,
        commas: impl Iterator<Item = u32>,
        flags: Flags,
    ) {
        let first_field = self.ends.len() as u32;
        self.ends.extend(commas);
        self.ends.push((end - start) as u32);
        self.entries.push(Entry {
            line,
            outcome: Outcome::Read,
            start: start as u32,
            end: end as u32,
            first_field,
            fields: self.ends.len() as u32 - first_field,
            gap: 1,
            flags,
        });
    }

    /// Adds the line at the start of `text` if all its quotes are simple: each quoted field opens right after a
    /// comma (or at the line's start) and closes right before a comma or the line end, with no quote, carriage
    /// return or line feed inside. Its fields are stored unquoted, back to back, as the full parser would
    /// store them. Returns the bytes the line takes with its end; for any other line (or one not wholly
    /// buffered, or over a limit) returns nothing and adds nothing: the full parser decides those.
    fn push_unquoted(
        &mut self,
        line: u64,
        text: &[u8],
        max_fields: usize,
        max_record_bytes: usize,
    ) -> Option<usize> {
        let (start, first_field) = (self.bytes.len(), self.ends.len());
        let used = unquote(
            text,
            &mut self.bytes,
            &mut self.ends,
            max_fields,
            max_record_bytes,
        );
        let Some(used) = used else {
            self.bytes.truncate(start);
            self.ends.truncate(first_field);
            return None;
        };
        self.entries.push(Entry {
            line,
            outcome: Outcome::Read,
            start: start as u32,
            end: self.bytes.len() as u32,
            first_field: first_field as u32,
            fields: (self.ends.len() - first_field) as u32,
            gap: 0,
            // As the full parser has it.
            flags: Flags::unquoted(&self.bytes[start..]),
        });
        Some(used)
    }

    /// Record `i`: the line it starts on, how it was read, and its fields (none when it was skipped).
    pub fn get(&self, i: usize) -> Option<(u64, Outcome, RecordView<'_>)> {
        let e = self.entries.get(i)?;
        let view = RecordView {
            bytes: self
                .bytes
                .get(e.start as usize..e.end as usize)
                .unwrap_or(&[]),
            ends: self
                .ends
                .get(e.first_field as usize..(e.first_field + e.fields) as usize)
                .unwrap_or(&[]),
            gap: e.gap,
            offset: e.start as usize,
            flags: e.flags,
        };
        Some((e.line, e.outcome, view))
    }
}

/// One record of a [`Records`] batch.
pub struct RecordView<'a> {
    bytes: &'a [u8],
    ends: &'a [u32],
    gap: u32,
    offset: usize,
    flags: Flags,
}

impl<'a> RecordView<'a> {
    /// Number of fields.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Byte range of field `i` within [`RecordView::bytes`]; empty when the record is shorter.
    pub fn field_range(&self, i: usize) -> (usize, usize) {
        match (
            i.checked_sub(1).and_then(|p| self.ends.get(p)),
            self.ends.get(i),
        ) {
            (_, None) => (0, 0),
            (None, Some(&end)) => (0, end as usize),
            (Some(&before), Some(&end)) => ((before + self.gap) as usize, end as usize),
        }
    }

    /// Field `i`; empty when the record is shorter.
    pub fn field(&self, i: usize) -> &'a [u8] {
        let (s, e) = self.field_range(i);
        self.bytes.get(s..e).unwrap_or(&[])
    }

    /// The record's bytes (the fields back to back, unquoted).
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Where the record starts in [`Records::data`].
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// What kinds of bytes the record holds.
    pub fn flags(&self) -> Flags {
        self.flags
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

/// The fields of a line with simple quotes (see [`Records::push_unquoted`]), unquoted and appended to `bytes`,
/// with their ends (from the record's start) appended to `ends`. Returns the bytes the line takes with its
/// end, or nothing when the line is not of that kind; what was appended is then the caller's to undo.
fn unquote(
    text: &[u8],
    bytes: &mut Vec<u8>,
    ends: &mut Vec<u32>,
    max_fields: usize,
    max_record_bytes: usize,
) -> Option<usize> {
    // The full parser drops a byte-order mark at the start of a record: it keeps that case.
    if text.starts_with(b"\xef\xbb\xbf") {
        return None;
    }
    let start = bytes.len();
    let mut at = 0;
    for _ in 0..max_fields {
        // Where the field's value is, and where the byte after it (a comma or the line end) is.
        let (value, after) = if text.get(at) == Some(&b'"') {
            let close = at + 1 + memchr::memchr(b'"', text.get(at + 1..)?)?;
            let value = &text[at + 1..close];
            if memchr::memchr2(b'\n', b'\r', value).is_some() {
                return None;
            }
            (value, close + 1)
        } else {
            let rest = text.get(at..)?;
            let end = at + memchr::memchr3(b',', b'\n', b'\r', rest)?;
            let value = &text[at..end];
            if memchr::memchr(b'"', value).is_some() {
                return None;
            }
            (value, end)
        };
        bytes.extend_from_slice(value);
        if bytes.len() - start >= max_record_bytes {
            return None;
        }
        ends.push((bytes.len() - start) as u32);
        match text.get(after) {
            Some(b',') => at = after + 1,
            Some(b'\n') => return Some(after + 1),
            Some(b'\r') if text.get(after + 1) == Some(&b'\n') => return Some(after + 2),
            _ => return None,
        }
    }
    None
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

    /// A small fixed generator of numbers (xorshift): the same test cases every run.
    fn numbers(mut state: u64) -> impl FnMut() -> usize {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 1_000_003) as usize
        }
    }

    #[test]
    fn the_line_scan_agrees_with_a_byte_by_byte_one() {
        // Lines built from the bytes that matter, by a small fixed generator (the same every run).
        let alphabet = b"ab,\n\r\"\x00 \x1f\x7f\x80\xff~!";
        let mut next = numbers(0x9e37_79b9_7f4a_7c15);
        for _ in 0..50_000 {
            let len = next() % 80;
            let bytes: Vec<u8> = (0..len)
                .map(|_| alphabet[next() % alphabet.len()])
                .collect();
            // Small limits take the careful path; room for eight more commas takes the fast one.
            let max_fields = 1 + next() % 48;
            let mut ends = vec![0; if next().is_multiple_of(2) { 1 } else { 64 }];
            let scan = scan_line(&bytes, &mut ends, max_fields);

            let stop = bytes.iter().position(|b| matches!(b, b'\n' | b'\r' | b'"'));
            let line = &bytes[..stop.unwrap_or(len)];
            let commas: Vec<usize> = (0..line.len()).filter(|&i| line[i] == b',').collect();
            let kept = commas.len().min(max_fields - 1);
            let plain = line.iter().all(|&b| b < 0x80 && b != 0);
            let bare = plain && line.iter().all(|&b| b > 0x20 && b != 0x7f);
            assert_eq!(scan.stop, stop.map(|i| (bytes[i], i)), "{bytes:?}");
            assert_eq!(scan.commas, kept, "{bytes:?}");
            assert_eq!(&ends[..kept], &commas[..kept], "{bytes:?}");
            assert_eq!(scan.too_many, commas.len() > kept, "{bytes:?}");
            assert_eq!(
                scan.flags,
                Flags {
                    plain,
                    bare,
                    breaks: false
                },
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn block_masks_agree_with_a_byte_by_byte_reading() {
        // Every byte value at every position, among neighbours that vary.
        for value in 0..=255u8 {
            for at in 0..BLOCK {
                let mut block = [0u8; BLOCK];
                for (i, b) in block.iter_mut().enumerate() {
                    *b = (i as u8).wrapping_mul(37).wrapping_add(value) ^ 0x55;
                }
                block[at] = value;
                let mut want = Masks::default();
                for (k, &b) in block.iter().enumerate() {
                    let bit = |yes: bool| u64::from(yes) << k;
                    want.commas |= bit(b == b',');
                    want.stops |= bit(matches!(b, b'\n' | b'\r' | b'"'));
                    want.high |= bit(b >= 0x80);
                    want.nul |= bit(b == 0);
                    want.odd |= bit(!(0x21..0x7f).contains(&b));
                }
                assert_eq!(masks(&block), want, "{block:?}");
                assert_eq!(masks_by_words(&block), want, "{block:?}");
            }
        }
        // A wide step puts each block's bits in place.
        let mut bytes = [b'a'; WIDE];
        for (i, at) in [0, 15, 16, 31, 47, 48, 63].into_iter().enumerate() {
            bytes[at] = [b',', b'\n', b'"', b'\r', b' ', 0, 0x80][i];
        }
        let m = wide_masks(&bytes);
        assert_eq!(m.commas, 1);
        assert_eq!(m.stops, 1 << 15 | 1 << 16 | 1 << 31);
        assert_eq!(m.nul, 1 << 48);
        assert_eq!(m.high, 1 << 63);
        assert_eq!(m.odd, 1 << 15 | 1 << 31 | 1 << 47 | 1 << 48 | 1 << 63);
    }

    /// Every record of a batch: line, outcome, fields, flags.
    type Seen = Vec<(u64, Outcome, Vec<Vec<u8>>, Flags)>;

    fn batch_records(batch: &Records) -> Seen {
        (0..batch.len())
            .filter_map(|i| batch.get(i))
            .map(|(line, outcome, view)| {
                let fields = (0..view.len()).map(|f| view.field(f).to_vec()).collect();
                (line, outcome, fields, view.flags())
            })
            .collect()
    }

    #[test]
    fn batches_hold_the_records_read_one_by_one() {
        let alphabet: &[&[u8]] = &[
            b"a",
            b"b",
            b"ab",
            b"id-0001",
            b",",
            b",",
            b",",
            b"\n",
            b"\n",
            b"\r\n",
            b"\r",
            b"\"",
            b"\x00",
            b" ",
            b"\x80",
            b"\xc3\xa9",
            b"\x7f",
            b"\xef\xbb\xbf",
        ];
        let mut next = numbers(0x2545_f491_4f6c_dd1d);
        for round in 0..3_000 {
            let pieces = next() % 120;
            let mut input = Vec::new();
            for _ in 0..pieces {
                input.extend_from_slice(alphabet[next() % alphabet.len()]);
            }
            if round % 7 == 0 {
                // Long runs of plain lines, the bulk path's main work.
                for i in 0..next() % 300 {
                    input.extend_from_slice(
                        format!("id-{i},,,x{i},{}\n", "y".repeat(i % 40)).as_bytes(),
                    );
                }
            }
            if round % 5 == 1 {
                // Quoted lines among plain ones: simple quotes, and the kinds the full parser must take.
                let quoted = [
                    "\"a,b\",c",
                    "x,\"\",\"y\"",
                    "\"s1-2027,s2-2027\",Homeroom,,1",
                    "\"a\"\"b\",c",
                    "\"line\nbreak\",z",
                    "a\"b,c",
                    "\"open,d",
                    "\"x\"y,z",
                    "\"\u{e9}\",\"\0\"",
                    "\u{feff}\"bom\",q",
                ];
                for i in 0..next() % 200 {
                    let body = if next().is_multiple_of(3) {
                        quoted[next() % quoted.len()].to_string()
                    } else {
                        format!("id-{i},{}", "w".repeat(i % 70))
                    };
                    let end = ["\n", "\r\n", "\n", "\r"][next() % 4];
                    input.extend_from_slice(format!("{body}{end}").as_bytes());
                }
            }
            let max_record = [4, 30, 1 << 20][next() % 3];
            let max_fields = [1, 3, 8, 70, 1000][next() % 5];
            let one_by_one = {
                let mut r = RecordReader::new(&input[..], max_record, max_fields);
                let mut all = Records::default();
                loop {
                    let n = r.next_record().expect("in-memory read");
                    if n == Next::End {
                        break;
                    }
                    all.push(&n, &r);
                }
                batch_records(&all)
            };
            for step in [1, 5, 17, input.len().max(1)] {
                let (max_rows, max_bytes) = (1 + next() % 40, 1 + next() % 400);
                let mut r = RecordReader::new(Trickle(&input, step), max_record, max_fields);
                let mut batched = Vec::new();
                loop {
                    let mut batch = Records::default();
                    let more = r
                        .read_batch(&mut batch, max_rows, max_bytes)
                        .expect("in-memory read");
                    assert!(batch.len() <= max_rows);
                    batched.extend(batch_records(&batch));
                    if !more {
                        break;
                    }
                }
                assert_eq!(batched, one_by_one, "round {round}, step {step}: {input:?}");
            }
        }
    }

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
