//! The README is the user's reference: every finding code must be in its table.

use rollcall::Code;

#[test]
fn readme_lists_every_finding_code() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let missing: Vec<&str> = Code::ALL
        .iter()
        .map(|c| c.as_str())
        .filter(|code| !readme.contains(&format!("| `{code}` |")))
        .collect();
    assert!(missing.is_empty(), "README.md does not list: {missing:?}");
}
