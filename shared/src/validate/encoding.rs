//! Names the encoding a file that is not UTF-8 was most likely saved in, so the hint can say what to convert
//! from. Legacy single- and multi-byte encodings are guessed by chardetng (the detector Firefox uses); UTF-16
//! is read off its byte-order mark or the NULs beside ASCII letters in the header, which is a fact, not a guess.

use std::io::{self, Read};

/// The most of a file fed to the detector: enough text for a confident guess, a bounded read.
const MOST_BYTES: u64 = 16 << 20;

/// The encoding chardetng takes the bytes of `reader` to be (UTF-8 not allowed: the caller knows it is not),
/// as encoding_rs names it (`Shift_JIS`, `windows-1252`, `EUC-KR`, ...).
pub fn guess(reader: impl Read) -> io::Result<&'static str> {
    let mut detector = chardetng::EncodingDetector::new();
    let mut limited = reader.take(MOST_BYTES);
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = limited.read(&mut buf)?;
        if n == 0 {
            break;
        }
        detector.feed(&buf[..n], false);
    }
    detector.feed(&[], true);
    Ok(detector.guess(None, false).name())
}

/// Which UTF-16 a header is in: from its byte-order mark, else from where the NULs beside its ASCII letters
/// fall (after each letter: little-endian).
pub fn utf16_flavour(header: &[u8]) -> &'static str {
    if header.starts_with(b"\xff\xfe") {
        return "UTF-16 LE";
    }
    if header.starts_with(b"\xfe\xff") {
        return "UTF-16 BE";
    }
    let (mut even, mut odd) = (0usize, 0usize);
    for (i, b) in header.iter().enumerate() {
        if *b == 0 {
            if i % 2 == 0 { even += 1 } else { odd += 1 }
        }
    }
    if odd >= even {
        "UTF-16 LE"
    } else {
        "UTF-16 BE"
    }
}

/// How to re-save a file as UTF-8, naming the encoding it is in.
/// windows-1252 is also the detector's answer for Mac Roman (which it does not tell apart, both being Western
/// single-byte text), so the hint names both.
pub fn resave_hint(file: &str, encoding: &str) -> String {
    let looks = if encoding == "windows-1252" {
        "windows-1252 (Western; or Mac Roman, if the file was made on a Mac)".to_string()
    } else {
        encoding.to_string()
    };
    format!(
        "the bytes look like {looks}: save {file} as UTF-8 (in Excel: Save As, \"CSV UTF-8\"; or convert it \
         with iconv -f {} -t UTF-8 {file} > {file}.utf8)",
        encoding.to_ascii_uppercase()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf16_is_told_apart_by_bom_or_nul_position() {
        assert_eq!(utf16_flavour(b"\xff\xfes\0o\0"), "UTF-16 LE");
        assert_eq!(utf16_flavour(b"\xfe\xff\0s\0o"), "UTF-16 BE");
        assert_eq!(utf16_flavour(b"s\0o\0u\0"), "UTF-16 LE");
        assert_eq!(utf16_flavour(b"\0s\0o\0u"), "UTF-16 BE");
    }
}
