//! `rollcall demo`: the main job on one machine. A generated district goes through the whole local pipeline:
//! first sync, a day of realistic changes, a manual edit kept across the next sync, and a broken export held by
//! the guard, printing what happens at each step.

use crate::roster::outcome_text;
use anyhow::Context;
use clap::Args;
use rollcall::apply::edit;
use rollcall::generate::{GenOptions, OutputFormat, generate};
use rollcall::model::{Entity, Tenant};
use rollcall::store::sqlite::SqliteStore;
use rollcall::store::{Store, for_each_record};
use rollcall::sync::{Local, SyncOptions, SyncOutcome, SyncStatus};
use rollcall::{Limits, NoProgress, validate_path};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args)]
pub struct DemoArgs {
    /// Size of the demo district, in users.
    #[arg(long, default_value_t = 3_000)]
    users: u64,
    /// Keep the bundles and the demo's roster database in this folder (default: a temporary folder).
    #[arg(long)]
    keep: Option<PathBuf>,
}

const TENANT: &str = "maple";

/// Where the demo's district is synced: the local pipeline, or a deployed stack.
trait Runner {
    fn store(&self) -> &dyn Store;
    fn sync(&self, bundle: &Path) -> anyhow::Result<SyncOutcome>;
    fn reject(&self, batch: &str) -> anyhow::Result<()>;
}

struct LocalRunner<'a> {
    local: Local<'a>,
    store: &'a SqliteStore,
    opts: SyncOptions,
}

impl Runner for LocalRunner<'_> {
    fn store(&self) -> &dyn Store {
        self.store
    }
    fn sync(&self, bundle: &Path) -> anyhow::Result<SyncOutcome> {
        Ok(self
            .local
            .sync_path(TENANT, bundle, &self.opts, &NoProgress)?)
    }
    fn reject(&self, batch: &str) -> anyhow::Result<()> {
        self.local.reject(batch, &self.opts)?;
        Ok(())
    }
}

#[cfg(feature = "aws")]
struct AwsRunner<'a> {
    stack: &'a crate::aws::Stack,
}

#[cfg(feature = "aws")]
impl Runner for AwsRunner<'_> {
    fn store(&self) -> &dyn Store {
        &self.stack.store
    }
    fn sync(&self, bundle: &Path) -> anyhow::Result<SyncOutcome> {
        crate::aws::sync_outcome(self.stack, TENANT, bundle, &Limits::default(), 900)
    }
    fn reject(&self, batch: &str) -> anyhow::Result<()> {
        crate::aws::decide_batch(self.stack, batch, false, 300)?;
        Ok(())
    }
}

/// The demo on the embedded store, in a folder of its own.
pub fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let temp = tempfile::tempdir().context("creating a temporary folder")?;
    let root = args
        .keep
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let db = crate::roster::DbArgs {
        db: root.join("rollcall.db"),
    };
    let store = SqliteStore::open(&db.db)?;
    let blobs = db.blobs();
    let runner = LocalRunner {
        local: crate::roster::local(&store, &blobs),
        store: &store,
        opts: SyncOptions::default(),
    };
    demo(args, &runner, &root)
}

/// The demo on a deployed stack (or `scripts/aws-local`): uploads go through S3 and the state machine.
#[cfg(feature = "aws")]
pub fn run_aws(args: &DemoArgs, stack: &crate::aws::Stack) -> anyhow::Result<ExitCode> {
    let temp = tempfile::tempdir().context("creating a temporary folder")?;
    let root = args
        .keep
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    demo(args, &AwsRunner { stack }, &root)
}

fn demo(args: &DemoArgs, runner: &dyn Runner, root: &Path) -> anyhow::Result<ExitCode> {
    let store = runner.store();

    step(
        1,
        &format!(
            "A district exports its roster (generated: {} users).",
            args.users
        ),
    );
    let day1 = root.join("day1");
    let gen_opts = GenOptions {
        users: args.users,
        ..GenOptions::default()
    };
    let summary =
        generate(&gen_opts, &day1, OutputFormat::Folder).context("generating the demo district")?;
    outln!(
        "   {} schools, {} users, {} classes, {} enrollments",
        summary.schools,
        summary.users(),
        summary.classes,
        summary.enrollments
    );
    let report = validate_path(&day1, &Limits::default(), &NoProgress)?;
    outln!(
        "   rollcall validate: {}",
        report.render_text(rollcall::Style::Plain, 3).trim()
    );

    step(
        2,
        "rollcall tenant add maple; rollcall sync day1 --tenant maple",
    );
    let mut tenant = Tenant::new(TENANT);
    tenant.name = "Maple Valley USD".into();
    if store.get_tenant(TENANT)?.is_none() {
        store.put_tenant(&tenant)?;
    }
    let first = synced(runner, &day1)?;
    expect(&first, SyncStatus::Applied)?;

    step(
        3,
        "The next day: a student leaves, a new one enrolls, a teacher's name and a class title change.",
    );
    let day2 = copy_bundle(&day1, &root.join("day2"))?;
    let leaver = "stu-0000005";
    drop_lines(&day2, "users.csv", &format!("{leaver},"))?;
    drop_lines(&day2, "demographics.csv", &format!("{leaver},"))?;
    drop_lines(&day2, "enrollments.csv", &format!(",{leaver},"))?;
    let class = first_class(&day2)?;
    append(
        &day2,
        "users.csv",
        "stu-9000001,,,true,sch-0001,student,new.kid9000001,{SIS:9000001},Noor,Haddad,,9000001,,,,,KG,",
    )?;
    append(
        &day2,
        "enrollments.csv",
        &format!("enr-90000001,,,{class},sch-0001,stu-9000001,student,false,,"),
    )?;
    set_field(&day2, "users.csv", "tch-000001,", 9, "Okonkwo-Lee")?;
    set_field(
        &day2,
        "classes.csv",
        &format!("{class},"),
        3,
        "Homeroom KG - Room of Wonders",
    )?;
    let second = synced(runner, &day2)?;
    expect(&second, SyncStatus::Applied)?;

    step(
        4,
        &format!(
            "Support renames class {class} by hand and marks tch-000001 as a primary administrator."
        ),
    );
    edit::edit(
        store,
        TENANT,
        Entity::Classes,
        &class,
        &[("title".into(), "KG Sunflowers".into())],
        "support",
    )?;
    edit::edit(
        store,
        TENANT,
        Entity::Users,
        "tch-000001",
        &[("primaryAdministrator".into(), "true".into())],
        "support",
    )?;
    outln!("   the SIS then renames the same class again; the next sync keeps the manual title:");
    let day3 = copy_bundle(&day2, &root.join("day3"))?;
    set_field(
        &day3,
        "classes.csv",
        &format!("{class},"),
        3,
        "Homeroom KG - Sunflower Room",
    )?;
    let third = synced(runner, &day3)?;
    expect(&third, SyncStatus::Applied)?;
    let kept = store
        .get_record(TENANT, Entity::Classes, &class)?
        .context("the class is stored")?;
    outln!(
        "   rollcall show --tenant maple classes {class}: title {:?} (manual, by support); the SIS's {:?} is kept beside it",
        kept.fields.get("title").map_or("", String::as_str),
        kept.sis_fields.get("title").map_or("", String::as_str)
    );
    let admin = store
        .get_record(TENANT, Entity::Users, "tch-000001")?
        .context("the teacher is stored")?;
    outln!(
        "   tch-000001 primaryAdministrator = {:?}",
        admin
            .fields
            .get("primaryAdministrator")
            .map_or("", String::as_str)
    );

    step(
        5,
        "An export that went through a spreadsheet: TRUE for true, Scheduled for scheduled, a lost leading zero.",
    );
    let spreadsheet = copy_bundle(&day3, &root.join("spreadsheet"))?;
    set_field(&spreadsheet, "users.csv", "tch-000002,", 3, "TRUE")?;
    rewrite(&spreadsheet, "classes.csv", |lines| {
        lines
            .into_iter()
            .map(|l| l.replacen(",scheduled,", ",Scheduled,", 1))
            .collect()
    })?;
    rewrite(&spreadsheet, "courses.csv", |lines| {
        lines
            .into_iter()
            .map(|l| l.replace(",01,", ",1,"))
            .collect()
    })?;
    let rejected = synced(runner, &spreadsheet)?;
    expect(&rejected, SyncStatus::Rejected)?;

    step(
        6,
        "A broken export arrives: nine in ten enrollments are missing.",
    );
    let broken = copy_bundle(&day3, &root.join("broken"))?;
    keep_fraction(&broken, "enrollments.csv", 10)?;
    let held = synced(runner, &broken)?;
    expect(&held, SyncStatus::Held)?;
    outln!(
        "   ops look at it and reject it: rollcall reject {}",
        held.batch
    );
    runner.reject(&held.batch)?;
    let mut active = 0;
    for_each_record(store, TENANT, Entity::Enrollments, None, None, |r| {
        active += usize::from(r.active);
        Ok::<_, rollcall::store::StoreError>(())
    })?;
    outln!("   the roster still has {active} active enrollments.");

    step(7, "rollcall history --tenant maple");
    for b in store.list_batches(TENANT)? {
        let changes: u64 = b.counts.values().map(|c| c.changes()).sum();
        let label = if b.status == rollcall::model::BatchStatus::Applied {
            "changes"
        } else {
            "changes planned"
        };
        outln!("   {} {:<10} {changes} {label}", b.id, b.status.as_str());
    }
    if args.keep.is_none() {
        outln!("\n(pass --keep DIR to keep the bundles and the roster database and look at them)");
    }
    Ok(ExitCode::SUCCESS)
}

fn step(n: u32, text: &str) {
    outln!("\n{n}. {text}");
}

fn synced(runner: &dyn Runner, bundle: &Path) -> anyhow::Result<SyncOutcome> {
    let outcome = runner.sync(bundle)?;
    for line in outcome_text(&outcome).lines() {
        outln!("   {line}");
    }
    Ok(outcome)
}

fn expect(outcome: &SyncOutcome, status: SyncStatus) -> anyhow::Result<()> {
    anyhow::ensure!(
        outcome.status == status,
        "the demo expected the sync to be {} but it was {}",
        status.as_str(),
        outcome.status.as_str()
    );
    Ok(())
}

fn copy_bundle(from: &Path, to: &Path) -> anyhow::Result<PathBuf> {
    fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in fs::read_dir(from)? {
        let path = entry?.path();
        if let Some(name) = path.file_name() {
            fs::copy(&path, to.join(name))
                .with_context(|| format!("copying {}", path.display()))?;
        }
    }
    // A new export: the manifest names another export run, so it is another batch even if nothing changed.
    let manifest = to.join("manifest.csv");
    let text = fs::read_to_string(&manifest)?;
    let name = to
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    fs::write(
        &manifest,
        text.replace(
            "source.systemName,rollcall gen",
            &format!("source.systemName,rollcall gen {name}"),
        ),
    )?;
    Ok(to.to_path_buf())
}

fn rewrite(
    dir: &Path,
    file: &str,
    change: impl Fn(Vec<String>) -> Vec<String>,
) -> anyhow::Result<()> {
    let path = dir.join(file);
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let lines = change(text.lines().map(str::to_string).collect());
    fs::write(&path, lines.join("\n") + "\n").with_context(|| format!("writing {}", path.display()))
}

fn drop_lines(dir: &Path, file: &str, containing: &str) -> anyhow::Result<()> {
    rewrite(dir, file, |lines| {
        lines
            .into_iter()
            .filter(|l| !l.contains(containing))
            .collect()
    })
}

fn append(dir: &Path, file: &str, line: &str) -> anyhow::Result<()> {
    rewrite(dir, file, |mut lines| {
        lines.push(line.to_string());
        lines
    })
}

/// Sets column `index` of the row starting with `prefix` (generated rows have no quoted commas before it).
fn set_field(
    dir: &Path,
    file: &str,
    prefix: &str,
    index: usize,
    value: &str,
) -> anyhow::Result<()> {
    rewrite(dir, file, |lines| {
        lines
            .into_iter()
            .map(|l| {
                if !l.starts_with(prefix) {
                    return l;
                }
                let mut fields: Vec<String> = l.split(',').map(str::to_string).collect();
                if let Some(f) = fields.get_mut(index) {
                    *f = value.to_string();
                }
                fields.join(",")
            })
            .collect()
    })
}

fn keep_fraction(dir: &Path, file: &str, percent: usize) -> anyhow::Result<()> {
    rewrite(dir, file, |lines| {
        let keep = 1 + (lines.len() - 1) * percent / 100;
        lines.into_iter().take(keep).collect()
    })
}

fn first_class(dir: &Path) -> anyhow::Result<String> {
    let text = fs::read_to_string(dir.join("classes.csv"))?;
    text.lines()
        .nth(1)
        .and_then(|l| l.split(',').next())
        .map(str::to_string)
        .context("classes.csv has no rows")
}
