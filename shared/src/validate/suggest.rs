//! Did-you-mean: the closest known name to something misspelt, for hints.

/// Edit distance between two short strings (Levenshtein, by characters).
pub fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            let cost = usize::from(ca != *cb);
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + cost);
            diagonal = above;
        }
    }
    row[b.len()]
}

/// The candidate closest to `wrong`: equal ignoring case, or within a small edit distance (about a quarter of
/// the length, at least 1, at most 3). `None` when nothing is close enough to be a useful suggestion.
pub fn closest<'a>(wrong: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (wrong.chars().count() / 4).clamp(1, 3);
    let lower = wrong.to_ascii_lowercase();
    let mut best: Option<(usize, &'a str)> = None;
    for candidate in candidates {
        let d = if candidate.eq_ignore_ascii_case(wrong) {
            0
        } else {
            distance(&lower, &candidate.to_ascii_lowercase())
        };
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, candidate));
        }
    }
    best.map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(distance("grade", "grades"), 1);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("", "abc"), 3);
    }

    #[test]
    fn suggestions() {
        let names = ["orgSourcedIds", "role", "username"];
        assert_eq!(closest("orgSourcedId", names), Some("orgSourcedIds"));
        assert_eq!(closest("Role", names), Some("role"));
        assert_eq!(closest("zzz", names), None);
        assert_eq!(
            closest("fiel.demographics", ["file.demographics"]),
            Some("file.demographics")
        );
    }
}
