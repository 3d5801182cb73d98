//! `rollcall demo`: the main job on one machine. Generates a demo district, validates it, then validates a copy
//! broken the way real exports break, printing what happens at each step.

use crate::stdout_style;
use anyhow::Context;
use clap::Args;
use rollcall::generate::{GenOptions, OutputFormat, generate};
use rollcall::{Limits, NoProgress, validate_path};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args)]
pub struct DemoArgs {
    /// Size of the demo district, in users.
    #[arg(long, default_value_t = 3_000)]
    users: u64,
    /// Keep the generated bundles in this folder (default: a temporary folder, removed afterwards).
    #[arg(long)]
    keep: Option<PathBuf>,
}

pub fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let temp = tempfile::tempdir().context("creating a temporary folder")?;
    let root = args
        .keep
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let style = stdout_style();
    let limits = Limits::default();

    println!(
        "1. A district exports its roster (generated: {} users).",
        args.users
    );
    let good = root.join("district.zip");
    let opts = GenOptions {
        users: args.users,
        ..GenOptions::default()
    };
    let summary =
        generate(&opts, &good, OutputFormat::Zip).context("generating the demo district")?;
    println!(
        "   {}: {} schools, {} users, {} classes, {} enrollments",
        good.display(),
        summary.schools,
        summary.users(),
        summary.classes,
        summary.enrollments
    );

    println!("\n2. rollcall validate {}", good.display());
    let report = validate_path(&good, &limits, &NoProgress)?;
    print!("{}", report.render_text(style, 3));
    anyhow::ensure!(report.valid, "the generated district should be valid");

    println!("\n3. The same export after a trip through a spreadsheet and a hand edit:");
    let broken = root.join("broken");
    generate(&opts, &broken, OutputFormat::Folder).context("generating the copy to break")?;
    break_export(&broken)?;
    println!("   manifest.version 1, TRUE for true, Scheduled for scheduled, grade 1 for 01,");
    println!("   a duplicated user and an enrollment of a user who is not in users.csv.");
    println!("\n   rollcall validate {}", broken.display());
    let report = validate_path(&broken, &limits, &NoProgress)?;
    print!("{}", report.render_text(style, 3));
    anyhow::ensure!(!report.valid, "the broken export should be rejected");

    println!(
        "\nThe first bundle would be accepted; the second is rejected with every problem located, so nothing from it is applied."
    );
    if args.keep.is_none() {
        println!("(pass --keep DIR to keep the bundles and look at them)");
    }
    Ok(ExitCode::SUCCESS)
}

/// Applies the mistakes real exports carry.
fn break_export(dir: &Path) -> anyhow::Result<()> {
    edit(dir, "manifest.csv", |text| {
        text.replacen("manifest.version,1.0", "manifest.version,1", 1)
    })?;
    edit(dir, "users.csv", |text| {
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        if let Some(line) = lines.get_mut(3) {
            *line = line.replacen(",true,", ",TRUE,", 1);
        }
        if let Some(copy) = lines.get(5).cloned() {
            lines.insert(6, copy);
        }
        lines.join("\n") + "\n"
    })?;
    edit(dir, "classes.csv", |text| {
        text.replacen(",scheduled,", ",Scheduled,", 1)
    })?;
    edit(dir, "courses.csv", |text| text.replacen(",01,", ",1,", 1))?;
    edit(dir, "enrollments.csv", |text| {
        format!(
            "{text}enr-99999999,,,{},sch-0001,stu-9999999,student,false,,\n",
            first_class(text)
        )
    })?;
    Ok(())
}

fn first_class(enrollments: &str) -> String {
    enrollments
        .lines()
        .nth(1)
        .and_then(|l| l.split(',').nth(3))
        .unwrap_or("cls-0001-KG-0-01")
        .to_string()
}

fn edit(dir: &Path, name: &str, change: impl Fn(&str) -> String) -> anyhow::Result<()> {
    let path = dir.join(name);
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    fs::write(&path, change(&text)).with_context(|| format!("writing {}", path.display()))
}
