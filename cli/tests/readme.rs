//! The README's examples, run as written: every `rollcall ...` line of a fenced shell block runs, in order, in
//! a folder holding the demo district the README names (`rollcall gen --users 2000` as `roster.zip`, and as
//! the folder `export`), through `sh` with this build's `rollcall` first on PATH and the default database.
//! Lines with `--aws` need a deployed stack (the AWS tests run those paths) and lines marked `# needs ...`
//! need what they name; both are counted, not run.

use std::path::Path;
use std::process::Command;

/// The `rollcall` lines of the README's shell blocks, continuations joined, each with its comment.
fn examples(readme: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut in_shell = false;
    let mut pending = String::new();
    for line in readme.lines() {
        if let Some(fence) = line.strip_prefix("```") {
            in_shell = !in_shell && matches!(fence.trim(), "sh" | "bash" | "shell");
            pending.clear();
            continue;
        }
        if !in_shell {
            continue;
        }
        let joined = if pending.is_empty() {
            line.trim().to_string()
        } else {
            format!("{pending} {}", line.trim())
        };
        if let Some(start) = joined.strip_suffix('\\') {
            pending = start.trim_end().to_string();
            continue;
        }
        pending.clear();
        let (command, comment) = split_comment(&joined);
        if command.starts_with("rollcall ") {
            out.push((command, comment));
        }
    }
    out
}

/// A shell line's command and its trailing `# comment` (a `#` outside quotes, after a space).
fn split_comment(line: &str) -> (String, String) {
    let mut quote: Option<char> = None;
    let mut previous = ' ';
    for (i, c) in line.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' && previous.is_whitespace() => {
                return (
                    line[..i].trim().to_string(),
                    line[i + 1..].trim().to_string(),
                );
            }
            None => {}
        }
        previous = c;
    }
    (line.trim().to_string(), String::new())
}

fn rollcall(dir: &Path, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_rollcall"))
        .args(args)
        .current_dir(dir)
        .env_remove("ROLLCALL_DB")
        .output()
        .expect("run rollcall");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_rollcall_example_in_the_readme_runs_as_written() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README");
    let examples = examples(&readme);
    let dir = tempfile::tempdir().expect("temp");
    rollcall(
        dir.path(),
        &["gen", "--users", "2000", "--out", "roster.zip"],
    );
    rollcall(
        dir.path(),
        &[
            "gen", "--users", "2000", "--out", "export", "--format", "dir",
        ],
    );
    let bin = Path::new(env!("CARGO_BIN_EXE_rollcall"))
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let (mut ran, mut aws, mut needs) = (0, 0, 0);
    for (command, comment) in &examples {
        if command.contains("--aws") {
            aws += 1;
            continue;
        }
        if comment.starts_with("needs ") {
            needs += 1;
            continue;
        }
        let out = Command::new("sh")
            .arg("-c")
            .arg(command)
            .current_dir(dir.path())
            .env("PATH", &path)
            .env("NO_COLOR", "1")
            .env_remove("ROLLCALL_DB")
            .output()
            .expect("run sh");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "README example failed: {command}\nexit {:?}\nstdout: {stdout}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        // A reading command that prints nothing names records the demo district does not have.
        let reads = ["show", "find", "history"]
            .iter()
            .any(|r| command.starts_with(&format!("rollcall {r} ")));
        assert!(
            !reads || !stdout.trim().is_empty(),
            "README example printed nothing: {command}"
        );
        ran += 1;
    }
    // The README's examples as they stand: a failure here means a block was not read, not a missing example.
    assert!(ran >= 15, "only {ran} examples ran");
    assert!(aws >= 8, "only {aws} AWS examples found");
    eprintln!("{ran} README examples ran; {aws} need AWS, {needs} need what they name");
    // What the examples wrote is there.
    assert!(dir.path().join("report.json").exists());
    assert!(dir.path().join(".rollcall/rollcall.db").exists());
}

#[test]
fn comments_split_off_outside_quotes_only() {
    assert_eq!(
        split_comment("rollcall tenant add maple --name \"Maple #1\"   # the district"),
        (
            "rollcall tenant add maple --name \"Maple #1\"".to_string(),
            "the district".to_string()
        )
    );
    assert_eq!(
        split_comment("rollcall history --tenant maple"),
        ("rollcall history --tenant maple".to_string(), String::new())
    );
}
