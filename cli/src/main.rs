//! The `rollcall` command: parses arguments, calls the library, prints. Nothing here decides what is valid.

/// `print!` that ignores a closed standard output (`rollcall show ... | head`) instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::emit(&format!($($arg)*))
    };
}

/// `println!` that ignores a closed standard output.
macro_rules! outln {
    () => {
        $crate::emit("\n")
    };
    ($($arg:tt)*) => {
        $crate::emit(&format!("{}\n", format_args!($($arg)*)))
    };
}

/// Planning and applying make and drop many small values (a record's fields are a few dozen strings), a few
/// thousand at a time per chunk; glibc's allocator spends a third of a first sync consolidating them.
#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod advice;
#[cfg(feature = "aws")]
mod aws;
mod bench;
mod demo;
mod progress;
mod pull;
mod roster;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use rollcall::generate::{GenOptions, OutputFormat, generate};
use rollcall::{Limits, NoProgress, Progress, Report, Style, validate_path};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "rollcall",
    version,
    about = "Check, plan and keep OneRoster 1.1 rosters",
    long_about = "rollcall checks OneRoster 1.1 roster bundles from school districts and keeps each district's \
                  roster current: it validates a bundle, plans what it changes, holds exports that look broken \
                  for approval, and applies the rest with provenance and undo.\n\nStart with: rollcall validate roster.zip"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    db: roster::DbArgs,
    /// Act on a deployed stack instead of the local database: names from ROLLCALL_BUCKET, ROLLCALL_TABLE,
    /// ROLLCALL_STATE_MACHINE_ARN, ... (or --stack), credentials and AWS_ENDPOINT_URL from the environment.
    #[arg(long, global = true)]
    aws: bool,
    /// With --aws: read the stack's names from the outputs of this CloudFormation stack.
    #[arg(long, global = true, value_name = "NAME", requires = "aws")]
    stack: Option<String>,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Check a OneRoster 1.1 bundle (.zip, folder or one CSV) and report every problem with file, line and column.
    #[command(
        after_help = "Examples:\n  rollcall validate roster.zip\n  rollcall validate ./export --format json > report.json\n\n\
Exit codes: 0 valid (warnings allowed), 1 invalid, 2 the input could not be read."
    )]
    Validate(ValidateArgs),
    /// Generate a synthetic district as a valid OneRoster 1.1 bundle (deterministic for a seed).
    #[command(
        after_help = "Examples:\n  rollcall gen --users 2000 --out demo.zip\n  rollcall gen --users 1000000 --out district --format dir"
    )]
    Gen(GenArgs),
    /// Show rollcall at work: a generated district through the whole local pipeline (sync, changes, a manual edit, a broken export held).
    #[command(after_help = "Example:\n  rollcall demo --users 5000 --keep demo-out")]
    Demo(demo::DemoArgs),
    /// Measure rollcall on a generated district (build with --release for real figures).
    #[command(
        after_help = "Examples:\n  cargo run --release -p rollcall-cli -- bench validate --users 1000000\n  cargo run --release -p rollcall-cli -- bench sync --users 1000000"
    )]
    Bench(bench::BenchArgs),
    /// Add, change and list tenants (districts).
    #[command(
        subcommand,
        after_help = "Example:\n  rollcall tenant add maple --name \"Maple Valley USD\""
    )]
    Tenant(roster::TenantCommand),
    /// Validate, plan, guard and apply a bundle to a tenant's roster.
    #[command(
        after_help = "Examples:\n  rollcall sync roster.zip --tenant maple\n  rollcall sync roster.zip --tenant maple --dry-run --format json\n\n\
Exit codes: 0 applied, planned (dry run) or already applied; 1 rejected (invalid bundle); 2 could not run; 3 held for approval."
    )]
    Sync(roster::SyncArgs),
    /// Apply a batch the guard held.
    #[command(after_help = "Example:\n  rollcall approve b3f2...")]
    Approve(roster::BatchArgs),
    /// Discard a batch the guard held.
    #[command(after_help = "Example:\n  rollcall reject b3f2...")]
    Reject(roster::BatchArgs),
    /// Undo an applied batch, restoring every record it changed.
    #[command(after_help = "Example:\n  rollcall rollback b3f2...")]
    Rollback(roster::RollbackArgs),
    /// Set fields of a record by hand (kept across syncs according to the tenant's policy).
    #[command(
        after_help = "Example:\n  rollcall edit --tenant maple users stu-0000042 --set givenName=Ana --set primaryAdministrator=true"
    )]
    Edit(roster::EditArgs),
    /// Create a record by hand.
    #[command(
        after_help = "Example:\n  rollcall create --tenant maple users tutor-1 --set enabledUser=true --set orgSourcedIds=sch-0001 --set role=aide --set username=tia.ng --set givenName=Tia --set familyName=Ng\n\nThe record is checked as a bundle's row would be; a record a sync would reject is not created."
    )]
    Create(roster::EditArgs),
    /// Archive a record by hand.
    #[command(after_help = "Example:\n  rollcall archive --tenant maple users stu-0000042")]
    Archive(roster::RecordArgs),
    /// Restore a record archived by hand or by a sync.
    #[command(after_help = "Example:\n  rollcall restore --tenant maple users stu-0000042")]
    Restore(roster::RecordArgs),
    /// Show a tenant's records of one entity, or one record with the provenance of every field.
    #[command(
        after_help = "Examples:\n  rollcall show --tenant maple orgs\n  rollcall show --tenant maple users stu-0000042"
    )]
    Show(roster::ShowArgs),
    /// Find users by SSO identity (username or a userIds entry), or the enrollments of a class or a user.
    #[command(
        after_help = "Examples:\n  rollcall find --tenant maple --username ravi.campbell42\n  rollcall find --tenant maple --user-id SIS:100000042\n  rollcall find --tenant maple --class cls-0001-KG-0-01\n  rollcall find --tenant maple --enrolled stu-0000042"
    )]
    Find(roster::FindArgs),
    /// A tenant's sync history: batches, status, counts.
    #[command(after_help = "Example:\n  rollcall history --tenant maple")]
    History(roster::HistoryArgs),
    /// Where an API tenant's roster is pulled from: set it, or check that a pull would work.
    #[command(subcommand)]
    Source(pull::SourceCommand),
    /// Pull a tenant's roster from its OneRoster API and run it through sync.
    #[command(
        after_help = "Examples:\n  rollcall pull --tenant maple\n  rollcall pull --tenant maple --full --format json\n\n\
Exit codes: as for sync (0 applied, 1 rejected, 3 held), and 2 when the pull itself failed."
    )]
    Pull(pull::PullArgs),
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
}

#[derive(Args)]
struct ValidateArgs {
    /// The bundle: a .zip, a folder of CSV files, or a single CSV file.
    path: PathBuf,
    /// Output format: text for people, json for tools (stable shape).
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    format: ReportFormat,
    /// Lines shown per finding code in the text report.
    #[arg(long, default_value_t = 3)]
    examples: usize,
    #[command(flatten)]
    limits: LimitArgs,
}

/// Limits against hostile input; the defaults suit any real district.
#[derive(Args, Clone)]
pub struct LimitArgs {
    /// Most bytes a zip may expand to.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_uncompressed_bytes)]
    max_uncompressed: u64,
    /// Highest compression ratio for a zip entry over 1 MiB.
    #[arg(long, value_name = "RATIO", default_value_t = Limits::default().max_compression_ratio)]
    max_ratio: u64,
    /// Most entries in a zip.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_zip_entries)]
    max_zip_entries: usize,
    /// Longest field, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_field_bytes)]
    max_field_bytes: usize,
    /// Longest row, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_record_bytes)]
    max_record_bytes: usize,
    /// Most columns in a file.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_columns)]
    max_columns: usize,
    /// Most findings listed (all are counted).
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_findings)]
    max_findings: usize,
}

impl LimitArgs {
    pub fn limits(&self) -> Limits {
        Limits {
            max_uncompressed_bytes: self.max_uncompressed,
            max_compression_ratio: self.max_ratio,
            max_zip_entries: self.max_zip_entries,
            max_field_bytes: self.max_field_bytes,
            max_record_bytes: self.max_record_bytes,
            max_columns: self.max_columns,
            max_findings: self.max_findings,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum GenFormat {
    Zip,
    Dir,
}

#[derive(Args)]
struct GenArgs {
    /// Total users: students, teachers, administrators (and guardians with --guardians).
    #[arg(long, default_value_t = 2_000)]
    users: u64,
    /// Seed: the same seed and options give the same bundle, byte for byte.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Number of schools (default: about one per 700 users).
    #[arg(long)]
    schools: Option<u32>,
    /// Give every student a guardian.
    #[arg(long)]
    guardians: bool,
    /// Leave out demographics.csv.
    #[arg(long)]
    no_demographics: bool,
    /// Where to write: a .zip file, or a folder.
    #[arg(long, default_value = "district.zip")]
    out: PathBuf,
    /// zip or dir (default: zip when --out ends in .zip, else dir).
    #[arg(long, value_enum)]
    format: Option<GenFormat>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match on_aws(&cli) {
        Some(result) => result,
        None => local(cli),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            match advice::advice(&err) {
                Some(next) => eprintln!("error: {err:#}; {next}"),
                None => eprintln!("error: {err:#}"),
            }
            ExitCode::from(2)
        }
    }
}

/// `--aws`: the commands that have a form on a deployed stack run there.
#[cfg(feature = "aws")]
fn on_aws(cli: &Cli) -> Option<anyhow::Result<ExitCode>> {
    if !cli.aws {
        return None;
    }
    aws::run(&cli.command, cli.stack.as_deref())
}

#[cfg(not(feature = "aws"))]
fn on_aws(cli: &Cli) -> Option<anyhow::Result<ExitCode>> {
    cli.aws.then(|| {
        Err(anyhow::anyhow!(
            "this rollcall was built without AWS support; build it with the `aws` feature"
        ))
    })
}

fn local(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate(args) => run_validate(&args),
        Command::Gen(args) => run_gen(&args).map(|()| ExitCode::SUCCESS),
        Command::Demo(args) => demo::run(&args),
        Command::Bench(args) => {
            let target = if cli.aws {
                bench::Target::Aws {
                    stack: cli.stack.as_deref(),
                }
            } else {
                bench::Target::Local
            };
            bench::run(&args, target).map(|()| ExitCode::SUCCESS)
        }
        Command::Tenant(command) => roster::run_tenant(&cli.db, &command),
        Command::Sync(args) => roster::run_sync(&cli.db, &args),
        Command::Approve(args) => roster::run_approve(&cli.db, &args),
        Command::Reject(args) => roster::run_reject(&cli.db, &args),
        Command::Rollback(args) => roster::run_rollback(&cli.db, &args),
        Command::Edit(args) => roster::run_edit(&cli.db, &args, false),
        Command::Create(args) => roster::run_edit(&cli.db, &args, true),
        Command::Archive(args) => roster::run_archive(&cli.db, &args, true),
        Command::Restore(args) => roster::run_archive(&cli.db, &args, false),
        Command::Show(args) => roster::run_show(&cli.db, &args),
        Command::Find(args) => roster::run_find(&cli.db, &args),
        Command::History(args) => roster::run_history(&cli.db, &args),
        Command::Source(command) => pull::run_source(&cli.db, &command),
        Command::Pull(args) => pull::run_pull(&cli.db, &args),
    }
}

/// Colour on a terminal unless NO_COLOR is set (https://no-color.org).
pub fn stdout_style() -> Style {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    if std::io::stdout().is_terminal() && !no_color {
        Style::Color
    } else {
        Style::Plain
    }
}

fn run_validate(args: &ValidateArgs) -> anyhow::Result<ExitCode> {
    let bar = match args.format {
        ReportFormat::Text => progress::Bar::for_terminal(),
        ReportFormat::Json => None,
    };
    let progress: &dyn Progress = match &bar {
        Some(bar) => bar,
        None => &NoProgress,
    };
    let report = match validate_path(&args.path, &args.limits.limits(), progress) {
        Ok(report) => report,
        Err(err) => {
            let err = anyhow::Error::from(err);
            match advice::advice(&err) {
                Some(next) => eprintln!("error: {err}; {next}"),
                None => eprintln!("error: {err}"),
            }
            return Ok(ExitCode::from(2));
        }
    };
    print_report(&report, args.format, args.examples);
    Ok(if report.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_report(report: &Report, format: ReportFormat, examples: usize) {
    match format {
        ReportFormat::Json => {
            // Streamed: a report listing a million findings is never one string in memory. A closed pipe
            // (`| head`) ends the output quietly, as for the text form.
            use std::io::Write as _;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let _ = report
                .write_json(&mut out)
                .and_then(|()| out.write_all(b"\n"))
                .and_then(|()| out.flush());
        }
        ReportFormat::Text => {
            emit(&report.render_text(stdout_style(), examples));
            for hint in limit_hints(report) {
                outln!("{hint}");
            }
        }
    }
}

/// Which of this command's flags raise the limits a report ran into (the report itself names the limit, not
/// the flag: it also goes to districts, who have no flags).
pub fn limit_hints(report: &Report) -> Vec<String> {
    use rollcall::Code;
    let hit = |code: Code| report.groups.keys().any(|(_, c, _)| *c == code);
    [
        (
            Code::CsvRecordTooLong,
            "--max-record-bytes raises the row-length limit",
        ),
        (
            Code::CsvTooManyFields,
            "--max-columns raises the column limit",
        ),
        (
            Code::CsvFieldTooLong,
            "--max-field-bytes raises the field-length limit",
        ),
        (
            Code::ReportTruncated,
            "--max-findings raises the limit on listed findings",
        ),
    ]
    .into_iter()
    .filter(|(code, _)| hit(*code))
    .map(|(_, hint)| format!("hint: {hint}"))
    .collect()
}

/// Writes to standard output; a reader that went away (`| head`) is not an error worth a panic.
pub fn emit(text: &str) {
    use std::io::Write as _;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

fn gen_format(out: &Path, format: Option<GenFormat>) -> OutputFormat {
    match format {
        Some(GenFormat::Zip) => OutputFormat::Zip,
        Some(GenFormat::Dir) => OutputFormat::Folder,
        None if out
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("zip")) =>
        {
            OutputFormat::Zip
        }
        None => OutputFormat::Folder,
    }
}

fn run_gen(args: &GenArgs) -> anyhow::Result<()> {
    let opts = GenOptions {
        users: args.users,
        seed: args.seed,
        schools: args.schools,
        guardians: args.guardians,
        demographics: !args.no_demographics,
    };
    let started = std::time::Instant::now();
    let summary = generate(&opts, &args.out, gen_format(&args.out, args.format))
        .with_context(|| format!("generating a district into {}", args.out.display()))?;
    outln!(
        "wrote {}: {} schools, {} users ({} students, {} teachers, {} administrators, {} guardians), {} courses, {} classes, {} enrollments, {:.1} MB of CSV in {:.1}s",
        args.out.display(),
        summary.schools,
        summary.users(),
        summary.students,
        summary.teachers,
        summary.administrators,
        summary.guardians,
        summary.courses,
        summary.classes,
        summary.enrollments,
        summary.bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
