//! A synthetic district generator: seeded and deterministic, realistic in shape (a district, elementary,
//! middle and high schools, a school year with semesters and grading periods, seven courses per grade, classes
//! of 20–35 students, teachers, administrators, optional guardians, demographics), any size. Writes a valid
//! OneRoster 1.1 bulk bundle as a zip or a folder, one file at a time, so a million users need little memory.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// What to generate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenOptions {
    /// Total users (students, teachers, administrators and guardians together).
    pub users: u64,
    /// Seed; the same seed and options give byte-identical output.
    pub seed: u64,
    /// Number of schools; by default about one per 700 users.
    pub schools: Option<u32>,
    /// Add a guardian for every student (linked both ways through agentSourcedIds).
    pub guardians: bool,
    /// Write demographics.csv (one row per student).
    pub demographics: bool,
}

impl Default for GenOptions {
    fn default() -> GenOptions {
        GenOptions {
            users: 2_000,
            seed: 1,
            schools: None,
            guardians: false,
            demographics: true,
        }
    }
}

/// Zip or folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Zip,
    Folder,
}

/// What was written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GenSummary {
    pub schools: u64,
    pub students: u64,
    pub teachers: u64,
    pub administrators: u64,
    pub guardians: u64,
    pub courses: u64,
    pub classes: u64,
    pub enrollments: u64,
    pub bytes: u64,
}

impl GenSummary {
    pub fn users(&self) -> u64 {
        self.students + self.teachers + self.administrators + self.guardians
    }
}

#[derive(Debug, Error)]
pub enum GenError {
    #[error(
        "a district of {schools} {} needs at least {min} users (each school needs an administrator, a teacher and students)",
        if *schools == 1 { "school" } else { "schools" }
    )]
    TooFewUsers { min: u64, schools: u64 },
    #[error("a district needs at least one school")]
    NoSchools,
    #[error(
        "{users} users is more than the generator makes (at most {max}; the largest US district has about 1M)"
    )]
    TooManyUsers { users: u64, max: u64 },
    #[error("{} is there already; choose another place, or remove it first", path.display())]
    Exists { path: PathBuf },
    #[error("{} is not a folder", path.display())]
    NotAFolder { path: PathBuf },
    // The cause is part of the message, not a source of its own, so a chain of causes says it once.
    #[error("{}: cannot write: {error}", path.display())]
    Io { path: PathBuf, error: io::Error },
    #[error("{}: cannot write the zip: {error}", path.display())]
    Zip {
        path: PathBuf,
        error: zip::result::ZipError,
    },
}

/// The school year everything is generated in (2026-27, which OneRoster calls 2027).
const SCHOOL_YEAR: u32 = 2027;

const GIVEN: &[&str] = &[
    "Ava", "Liam", "Olivia", "Noah", "Emma", "Mateo", "Sophia", "Elijah", "Isabella", "Lucas",
    "Mia", "Levi", "Amelia", "Ezra", "Harper", "Asher", "Evelyn", "James", "Luna", "Leo", "Camila",
    "Aiden", "Sofia", "Jayden", "Aaliyah", "Kai", "Zoe", "Diego", "Nora", "Omar", "Priya", "Wei",
    "Fatima", "Santiago", "Hana", "Malik", "Chloe", "Andre", "Yara", "Dmitri", "Grace", "Tomas",
    "Leila", "Jamal", "Ines", "Ravi", "Maya", "Kofi",
];
const FAMILY: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Nguyen",
    "Hill",
    "Flores",
    "Green",
    "Adams",
    "Nelson",
    "Baker",
    "Hall",
    "Rivera",
    "Campbell",
    "Mitchell",
    "Carter",
    "Roberts",
    "Okafor",
    "Patel",
    "Kim",
    "Chen",
    "Haddad",
    "Novak",
    "Silva",
];
const TOWNS: &[&str] = &[
    "Maple Valley",
    "Cedar Ridge",
    "Riverside",
    "Lakeview",
    "Pine Hollow",
    "Fairview",
    "Oak Harbor",
    "Brookfield",
    "Sunset Hills",
    "Willow Creek",
    "Granite Falls",
    "Clearwater",
];
const ELEMENTARY_SUBJECTS: &[(&str, &str)] = &[
    ("Homeroom", ""),
    ("Mathematics", "52031"),
    ("English Language Arts", "51035"),
    ("Science", "53231"),
    ("Social Studies", "54431"),
    ("Art", "55131"),
    ("Physical Education", "58031"),
];
const SECONDARY_SUBJECTS: &[(&str, &str)] = &[
    ("Mathematics", "02052"),
    ("English Language Arts", "01001"),
    ("Science", "03001"),
    ("Social Studies", "04001"),
    ("World Language", "06101"),
    ("Visual Arts", "05154"),
    ("Physical Education", "08001"),
];

/// SplitMix64: small, fast, and the same on every machine.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64, salt: u64) -> Rng {
        let mut r = Rng(seed
            ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ salt.wrapping_mul(0xD1B5_4A32_D192_ED03));
        r.next();
        r
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Level {
    Elementary,
    Middle,
    High,
}

impl Level {
    fn of(school: u64) -> Level {
        match school % 6 {
            0..=2 => Level::Elementary,
            3 | 4 => Level::Middle,
            _ => Level::High,
        }
    }

    fn grades(self) -> &'static [&'static str] {
        match self {
            Level::Elementary => &["KG", "01", "02", "03", "04", "05"],
            Level::Middle => &["06", "07", "08"],
            Level::High => &["09", "10", "11", "12"],
        }
    }

    fn subjects(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Level::Elementary => ELEMENTARY_SUBJECTS,
            _ => SECONDARY_SUBJECTS,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Level::Elementary => "Elementary School",
            Level::Middle => "Middle School",
            Level::High => "High School",
        }
    }
}

/// One school's share of the district.
struct SchoolPlan {
    number: u64,
    level: Level,
    students: u64,
    first_student: u64,
    teachers: u64,
    first_teacher: u64,
}

/// A grade's cohort, its courses and their class sections, laid out deterministically.
struct Section {
    grade: usize,
    subject: usize,
    section: u64,
    /// Offset and size within the grade's cohort, after the course's shuffle.
    start: u64,
    size: u64,
}

struct Layout {
    /// First student number and size of each grade's cohort.
    cohorts: Vec<(u64, u64)>,
    sections: Vec<Section>,
}

fn layout(seed: u64, school: &SchoolPlan) -> Layout {
    let grades = school.level.grades();
    let n = grades.len() as u64;
    let mut cohorts = Vec::with_capacity(grades.len());
    let mut next = school.first_student;
    for g in 0..n {
        let size = school.students / n + u64::from(g < school.students % n);
        cohorts.push((next, size));
        next += size;
    }
    let mut rng = Rng::new(seed, school.number, 1);
    let mut sections = Vec::new();
    for (g, &(_, cohort)) in cohorts.iter().enumerate() {
        if cohort == 0 {
            continue;
        }
        for subject in 0..school.level.subjects().len() {
            let target = 20 + rng.below(16);
            // As near the target size as the cohort allows, keeping every section within 20-35 where possible.
            let fewest = cohort.div_ceil(35);
            let most = (cohort / 20).max(fewest).max(1);
            let k = ((cohort + target / 2) / target).clamp(fewest.max(1), most);
            let mut start = 0;
            for s in 0..k {
                let size = cohort / k + u64::from(s < cohort % k);
                sections.push(Section {
                    grade: g,
                    subject,
                    section: s + 1,
                    start,
                    size,
                });
                start += size;
            }
        }
    }
    Layout { cohorts, sections }
}

/// The order in which a course's cohort is split into sections: a seeded shuffle, so classmates differ by subject.
fn shuffled_cohort(seed: u64, school: u64, grade: usize, subject: usize, size: u64) -> Vec<u32> {
    let mut order: Vec<u32> = (0..size as u32).collect();
    let mut rng = Rng::new(seed, school, 1000 + (grade as u64) * 31 + subject as u64);
    for i in (1..order.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    order
}

struct Plan {
    seed: u64,
    town: &'static str,
    domain: String,
    schools: Vec<SchoolPlan>,
    guardians: bool,
    demographics: bool,
    students: u64,
}

/// The most users one generated district has: twenty times the largest district there is, and small enough
/// that the generator's tables (per school, per class) fit in memory.
pub const MAX_USERS: u64 = 20_000_000;

fn plan(opts: &GenOptions) -> Result<Plan, GenError> {
    if opts.users > MAX_USERS {
        return Err(GenError::TooManyUsers {
            users: opts.users,
            max: MAX_USERS,
        });
    }
    let schools = match opts.schools {
        Some(0) => return Err(GenError::NoSchools),
        Some(n) => u64::from(n),
        None => (opts.users / 700).max(1),
    };
    // Each school: an administrator, at least one teacher, at least ten students (and their guardians).
    let per_school_min = 1 + 1 + if opts.guardians { 20 } else { 10 };
    let min = 1 + schools * per_school_min;
    if opts.users < min {
        return Err(GenError::TooFewUsers { min, schools });
    }
    let adults = 1 + schools;
    let people = opts.users - adults;
    let guardian_factor: u64 = if opts.guardians { 2 } else { 1 };
    // About one teacher per 20 students, and at least one per school.
    let teachers = (people / (20 * guardian_factor + 1)).max(schools);
    let students = (people - teachers) / guardian_factor;
    // An odd number left over when every student has a guardian becomes one more teacher.
    let teachers = people - students * guardian_factor;
    if students < schools * 10 {
        return Err(GenError::TooFewUsers { min, schools });
    }
    let mut rng = Rng::new(opts.seed, 0, 7);
    let town = rng.pick(TOWNS);
    let domain = format!("{}.example.org", town.to_ascii_lowercase().replace(' ', ""));
    let mut plans = Vec::with_capacity(schools as usize);
    let mut first_student = 1;
    for i in 0..schools {
        let share = students / schools + u64::from(i < students % schools);
        plans.push(SchoolPlan {
            number: i + 1,
            level: Level::of(i),
            students: share,
            first_student,
            teachers: 0,
            first_teacher: 0,
        });
        first_student += share;
    }
    // Teachers follow the number of classes each school runs (largest remainder, at least one each).
    let classes: Vec<u64> = plans
        .iter()
        .map(|s| layout(opts.seed, s).sections.len().max(1) as u64)
        .collect();
    let total_classes: u64 = classes.iter().sum();
    let spare = teachers - schools;
    let mut given = 0;
    let mut remainders = Vec::with_capacity(plans.len());
    for (i, s) in plans.iter_mut().enumerate() {
        let exact = spare as u128 * u128::from(classes[i]);
        let whole = (exact / u128::from(total_classes)) as u64;
        s.teachers = 1 + whole;
        given += whole;
        remainders.push(((exact % u128::from(total_classes)) as u64, i));
    }
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(_, i) in remainders.iter().take((spare - given) as usize) {
        plans[i].teachers += 1;
    }
    let mut first_teacher = 1;
    for s in &mut plans {
        s.first_teacher = first_teacher;
        first_teacher += s.teachers;
    }
    Ok(Plan {
        seed: opts.seed,
        town,
        domain,
        schools: plans,
        guardians: opts.guardians,
        demographics: opts.demographics,
        students,
    })
}

/// Where generated files go: a folder of CSVs, or entries of one zip.
enum Sink {
    Folder(PathBuf),
    Zip(Box<zip::ZipWriter<BufWriter<File>>>, PathBuf),
}

/// Writes one CSV file through a reused buffer.
struct CsvOut<'a> {
    sink: &'a mut Sink,
    file: Option<BufWriter<File>>,
    buf: String,
    path: PathBuf,
    bytes: u64,
}

impl CsvOut<'_> {
    fn row(&mut self) -> &mut String {
        &mut self.buf
    }

    fn end_row(&mut self) -> Result<(), GenError> {
        self.buf.push('\n');
        if self.buf.len() >= 1 << 20 {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), GenError> {
        let path = self.path.clone();
        self.bytes += self.buf.len() as u64;
        let result = match (&mut self.file, &mut *self.sink) {
            (Some(f), _) => f.write_all(self.buf.as_bytes()),
            (None, Sink::Zip(z, _)) => z.write_all(self.buf.as_bytes()),
            (None, Sink::Folder(_)) => Ok(()),
        };
        self.buf.clear();
        result.map_err(|error| GenError::Io { path, error })
    }

    fn finish(mut self) -> Result<u64, GenError> {
        self.flush()?;
        if let Some(mut f) = self.file.take() {
            f.flush().map_err(|error| GenError::Io {
                path: self.path.clone(),
                error,
            })?;
        }
        Ok(self.bytes)
    }
}

impl Sink {
    fn open(path: &Path, format: OutputFormat) -> Result<Sink, GenError> {
        let io_err = |error| GenError::Io {
            path: path.to_path_buf(),
            error,
        };
        // Never over another bundle (or anything else): a district is written only where nothing is.
        let taken = match format {
            OutputFormat::Folder => {
                path.exists()
                    && !(path.is_dir() && std::fs::read_dir(path).map_err(io_err)?.next().is_none())
            }
            OutputFormat::Zip => path.exists(),
        };
        if taken && format == OutputFormat::Folder && !path.is_dir() {
            return Err(GenError::NotAFolder {
                path: path.to_path_buf(),
            });
        }
        if taken {
            return Err(GenError::Exists {
                path: path.to_path_buf(),
            });
        }
        match format {
            OutputFormat::Folder => {
                std::fs::create_dir_all(path).map_err(io_err)?;
                Ok(Sink::Folder(path.to_path_buf()))
            }
            OutputFormat::Zip => {
                if let Some(parent) = path
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty() && p.exists() && !p.is_dir())
                {
                    return Err(GenError::NotAFolder {
                        path: parent.to_path_buf(),
                    });
                }
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).map_err(io_err)?;
                }
                let file = File::create(path).map_err(io_err)?;
                Ok(Sink::Zip(
                    Box::new(zip::ZipWriter::new(BufWriter::new(file))),
                    path.to_path_buf(),
                ))
            }
        }
    }

    fn start(&mut self, name: &str, header: &str) -> Result<CsvOut<'_>, GenError> {
        let (file, path) = match self {
            Sink::Folder(dir) => {
                let path = dir.join(name);
                let f = File::create(&path).map_err(|error| GenError::Io {
                    path: path.clone(),
                    error,
                })?;
                (Some(BufWriter::with_capacity(1 << 20, f)), path)
            }
            Sink::Zip(z, path) => {
                let options = zip::write::SimpleFileOptions::default()
                    .compression_method(zip::CompressionMethod::Deflated)
                    .compression_level(Some(1))
                    .large_file(true);
                let path = path.clone();
                z.start_file(name, options).map_err(|error| GenError::Zip {
                    path: path.clone(),
                    error,
                })?;
                (None, path)
            }
        };
        let mut out = CsvOut {
            sink: self,
            file,
            buf: String::with_capacity(1 << 20),
            path,
            bytes: 0,
        };
        out.buf.push_str(header);
        out.end_row()?;
        Ok(out)
    }

    fn finish(self) -> Result<(), GenError> {
        if let Sink::Zip(z, path) = self {
            let mut inner = z.finish().map_err(|error| GenError::Zip {
                path: path.clone(),
                error,
            })?;
            inner
                .flush()
                .map_err(|error| GenError::Io { path, error })?;
        }
        Ok(())
    }
}

/// Writes a generated district to `out` as a zip or a folder.
pub fn generate(
    opts: &GenOptions,
    out: &Path,
    format: OutputFormat,
) -> Result<GenSummary, GenError> {
    let plan = plan(opts)?;
    let mut sink = Sink::open(out, format)?;
    let mut summary = GenSummary {
        schools: plan.schools.len() as u64,
        students: plan.students,
        administrators: 1 + plan.schools.len() as u64,
        guardians: if plan.guardians { plan.students } else { 0 },
        ..GenSummary::default()
    };
    summary.teachers = plan.schools.iter().map(|s| s.teachers).sum();
    summary.bytes += write_manifest(&mut sink, &plan)?;
    summary.bytes += write_orgs(&mut sink, &plan)?;
    summary.bytes += write_sessions(&mut sink)?;
    let (bytes, courses) = write_courses(&mut sink, &plan)?;
    summary.bytes += bytes;
    summary.courses = courses;
    let (bytes, classes) = write_classes(&mut sink, &plan)?;
    summary.bytes += bytes;
    summary.classes = classes;
    summary.bytes += write_users(&mut sink, &plan)?;
    if plan.demographics {
        summary.bytes += write_demographics(&mut sink, &plan)?;
    }
    let (bytes, enrollments) = write_enrollments(&mut sink, &plan)?;
    summary.bytes += bytes;
    summary.enrollments = enrollments;
    sink.finish()?;
    Ok(summary)
}

fn write_manifest(sink: &mut Sink, plan: &Plan) -> Result<u64, GenError> {
    let mut out = sink.start("manifest.csv", "propertyName,value")?;
    let demographics = if plan.demographics { "bulk" } else { "absent" };
    let rows = [
        ("manifest.version", "1.0"),
        ("oneroster.version", "1.1"),
        ("file.academicSessions", "bulk"),
        ("file.categories", "absent"),
        ("file.classes", "bulk"),
        ("file.classResources", "absent"),
        ("file.courses", "bulk"),
        ("file.courseResources", "absent"),
        ("file.demographics", demographics),
        ("file.enrollments", "bulk"),
        ("file.lineItems", "absent"),
        ("file.orgs", "bulk"),
        ("file.resources", "absent"),
        ("file.results", "absent"),
        ("file.users", "bulk"),
        ("source.systemName", "rollcall gen"),
        ("source.systemCode", "rollcall"),
    ];
    for (name, value) in rows {
        let _ = write!(out.row(), "{name},{value}");
        out.end_row()?;
    }
    out.finish()
}

fn school_id(number: u64) -> String {
    format!("sch-{number:04}")
}

fn write_orgs(sink: &mut Sink, plan: &Plan) -> Result<u64, GenError> {
    let mut out = sink.start(
        "orgs.csv",
        "sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId",
    )?;
    let _ = write!(
        out.row(),
        "dist-01,,,{} Unified School District,district,0600001,",
        plan.town
    );
    out.end_row()?;
    let mut rng = Rng::new(plan.seed, 0, 11);
    for s in &plan.schools {
        let street = rng.pick(FAMILY);
        let _ = write!(
            out.row(),
            "{},,,{street} {},school,06{:05},dist-01",
            school_id(s.number),
            s.level.label(),
            s.number
        );
        out.end_row()?;
    }
    out.finish()
}

fn write_sessions(sink: &mut Sink) -> Result<u64, GenError> {
    let y = SCHOOL_YEAR;
    let p = y - 1;
    let mut out = sink.start(
        "academicSessions.csv",
        "sourcedId,status,dateLastModified,title,type,startDate,endDate,parentSourcedId,schoolYear",
    )?;
    let rows = [
        format!("sy-{y},,,{p}-{y} School Year,schoolYear,{p}-08-17,{y}-06-12,,{y}"),
        format!("s1-{y},,,Fall Semester {p},semester,{p}-08-17,{y}-01-16,sy-{y},{y}"),
        format!("s2-{y},,,Spring Semester {y},semester,{y}-01-19,{y}-06-12,sy-{y},{y}"),
        format!("q1-{y},,,Quarter 1,gradingPeriod,{p}-08-17,{p}-10-24,s1-{y},{y}"),
        format!("q2-{y},,,Quarter 2,gradingPeriod,{p}-10-27,{y}-01-16,s1-{y},{y}"),
        format!("q3-{y},,,Quarter 3,gradingPeriod,{y}-01-19,{y}-03-27,s2-{y},{y}"),
        format!("q4-{y},,,Quarter 4,gradingPeriod,{y}-03-30,{y}-06-12,s2-{y},{y}"),
    ];
    for row in rows {
        out.row().push_str(&row);
        out.end_row()?;
    }
    out.finish()
}

fn course_id(school: u64, grade: &str, subject: usize) -> String {
    format!("crs-{school:04}-{grade}-{subject}")
}

fn class_id(school: u64, grade: &str, subject: usize, section: u64) -> String {
    format!("cls-{school:04}-{grade}-{subject}-{section:02}")
}

fn write_courses(sink: &mut Sink, plan: &Plan) -> Result<(u64, u64), GenError> {
    let mut out = sink.start(
        "courses.csv",
        "sourcedId,status,dateLastModified,schoolYearSourcedId,title,courseCode,grades,orgSourcedId,subjects,subjectCodes",
    )?;
    let mut count = 0;
    for s in &plan.schools {
        let grades = s.level.grades();
        let cohorts = layout(plan.seed, s).cohorts;
        for (g, grade) in grades.iter().enumerate() {
            if cohorts[g].1 == 0 {
                continue;
            }
            for (i, (subject, code)) in s.level.subjects().iter().enumerate() {
                let _ = write!(
                    out.row(),
                    "{},,,sy-{SCHOOL_YEAR},{subject} {grade},{}{grade},{grade},{},{subject},{code}",
                    course_id(s.number, grade, i),
                    &subject[..3].to_ascii_uppercase(),
                    school_id(s.number)
                );
                out.end_row()?;
                count += 1;
            }
        }
    }
    Ok((out.finish()?, count))
}

fn write_classes(sink: &mut Sink, plan: &Plan) -> Result<(u64, u64), GenError> {
    let mut out = sink.start(
        "classes.csv",
        "sourcedId,status,dateLastModified,title,grades,courseSourcedId,classCode,classType,location,schoolSourcedId,termSourcedIds,subjects,subjectCodes,periods",
    )?;
    let mut count = 0;
    let terms = format!("\"s1-{SCHOOL_YEAR},s2-{SCHOOL_YEAR}\"");
    for s in &plan.schools {
        let grades = s.level.grades();
        let mut rng = Rng::new(plan.seed, s.number, 2);
        for sec in layout(plan.seed, s).sections {
            let grade = grades[sec.grade];
            let (subject, code) = s.level.subjects()[sec.subject];
            let class_type = if subject == "Homeroom" {
                "homeroom"
            } else {
                "scheduled"
            };
            let period = if s.level == Level::Elementary {
                1
            } else {
                sec.subject + 1
            };
            let _ = write!(
                out.row(),
                "{},,,{subject} {grade} - Section {},{grade},{},{}{grade}-{:02},{class_type},Room {},{},{terms},{subject},{code},{period}",
                class_id(s.number, grade, sec.subject, sec.section),
                sec.section,
                course_id(s.number, grade, sec.subject),
                &subject[..3].to_ascii_uppercase(),
                sec.section,
                100 + rng.below(300),
                school_id(s.number),
            );
            out.end_row()?;
            count += 1;
        }
    }
    Ok((out.finish()?, count))
}

/// A person's name, deterministic from their user number and kind.
fn person(seed: u64, kind: u64, number: u64) -> (&'static str, &'static str, &'static str) {
    let mut rng = Rng::new(seed, number, 100 + kind);
    (rng.pick(GIVEN), rng.pick(GIVEN), rng.pick(FAMILY))
}

#[allow(clippy::too_many_arguments)]
fn user_row(
    out: &mut CsvOut<'_>,
    plan: &Plan,
    id: &str,
    org: &str,
    role: &str,
    number: u64,
    kind: u64,
    agents: &str,
    grade: &str,
) -> Result<(), GenError> {
    let (given, middle, family) = person(plan.seed, kind, number);
    let username = format!(
        "{}.{}{number}",
        given.to_ascii_lowercase(),
        family.to_ascii_lowercase()
    );
    let sis = 100_000_000 * (kind + 1) + number;
    let _ = write!(
        out.row(),
        "{id},,,true,{org},{role},{username},{{SIS:{sis}}},{given},{family},{middle},{sis},{username}@{},,,{agents},{grade},",
        plan.domain
    );
    out.end_row()
}

fn write_users(sink: &mut Sink, plan: &Plan) -> Result<u64, GenError> {
    let mut out = sink.start(
        "users.csv",
        "sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,userIds,givenName,familyName,middleName,identifier,email,sms,phone,agentSourcedIds,grades,password",
    )?;
    user_row(
        &mut out,
        plan,
        "adm-00000",
        "dist-01",
        "administrator",
        0,
        2,
        "",
        "",
    )?;
    for s in &plan.schools {
        let school = school_id(s.number);
        user_row(
            &mut out,
            plan,
            &format!("adm-{:05}", s.number),
            &school,
            "administrator",
            s.number,
            2,
            "",
            "",
        )?;
        for t in s.first_teacher..s.first_teacher + s.teachers {
            user_row(
                &mut out,
                plan,
                &format!("tch-{t:06}"),
                &school,
                "teacher",
                t,
                1,
                "",
                "",
            )?;
        }
        let cohorts = layout(plan.seed, s).cohorts;
        for (g, &(first, size)) in cohorts.iter().enumerate() {
            let grade = s.level.grades()[g];
            for n in first..first + size {
                let agents = if plan.guardians {
                    format!("gdn-{n:07}")
                } else {
                    String::new()
                };
                user_row(
                    &mut out,
                    plan,
                    &format!("stu-{n:07}"),
                    &school,
                    "student",
                    n,
                    0,
                    &agents,
                    grade,
                )?;
                if plan.guardians {
                    user_row(
                        &mut out,
                        plan,
                        &format!("gdn-{n:07}"),
                        &school,
                        "guardian",
                        n,
                        3,
                        &format!("stu-{n:07}"),
                        "",
                    )?;
                }
            }
        }
    }
    out.finish()
}

fn write_demographics(sink: &mut Sink, plan: &Plan) -> Result<u64, GenError> {
    let mut out = sink.start(
        "demographics.csv",
        "sourcedId,status,dateLastModified,birthDate,sex,americanIndianOrAlaskaNative,asian,blackOrAfricanAmerican,nativeHawaiianOrOtherPacificIslander,white,demographicRaceTwoOrMoreRaces,hispanicOrLatinoEthnicity,countryOfBirthCode,stateOfBirthAbbreviation,cityOfBirth,publicSchoolResidenceStatus",
    )?;
    let flag = |b: bool| if b { "true" } else { "false" };
    for s in &plan.schools {
        let cohorts = layout(plan.seed, s).cohorts;
        for (g, &(first, size)) in cohorts.iter().enumerate() {
            // Kindergarten is grade 0 here; a student turns (grade + 6) during the school year.
            let grade_number = match s.level {
                Level::Elementary => g as u64,
                Level::Middle => 6 + g as u64,
                Level::High => 9 + g as u64,
            };
            for n in first..first + size {
                let mut rng = Rng::new(plan.seed, n, 50);
                let born = u64::from(SCHOOL_YEAR) - 7 - grade_number;
                let month = 1 + rng.below(12);
                let day = 1 + rng.below(28);
                let sex = if rng.chance(50) { "male" } else { "female" };
                let race = rng.below(100);
                let _ = write!(
                    out.row(),
                    "stu-{n:07},,,{born}-{month:02}-{day:02},{sex},{},{},{},{},{},{},{},US,CA,{},01652",
                    flag(race < 1),
                    flag((1..7).contains(&race)),
                    flag((7..20).contains(&race)),
                    flag(race == 20),
                    flag((21..92).contains(&race)),
                    flag(race >= 92),
                    flag(rng.chance(28)),
                    plan.town,
                );
                out.end_row()?;
            }
        }
    }
    out.finish()
}

fn write_enrollments(sink: &mut Sink, plan: &Plan) -> Result<(u64, u64), GenError> {
    let mut out = sink.start(
        "enrollments.csv",
        "sourcedId,status,dateLastModified,classSourcedId,schoolSourcedId,userSourcedId,role,primary,beginDate,endDate",
    )?;
    let mut next = 0u64;
    for s in &plan.schools {
        let school = school_id(s.number);
        let layout = layout(plan.seed, s);
        let grades = s.level.grades();
        let mut shuffled: Option<((usize, usize), Vec<u32>)> = None;
        for (j, sec) in layout.sections.iter().enumerate() {
            let grade = grades[sec.grade];
            let class = class_id(s.number, grade, sec.subject, sec.section);
            let teacher = s.first_teacher + (j as u64 % s.teachers);
            next += 1;
            let _ = write!(
                out.row(),
                "enr-{next:08},,,{class},{school},tch-{teacher:06},teacher,true,,"
            );
            out.end_row()?;
            let key = (sec.grade, sec.subject);
            if shuffled.as_ref().is_none_or(|(k, _)| *k != key) {
                let (_, cohort) = layout.cohorts[sec.grade];
                shuffled = Some((
                    key,
                    shuffled_cohort(plan.seed, s.number, sec.grade, sec.subject, cohort),
                ));
            }
            let (first, _) = layout.cohorts[sec.grade];
            if let Some((_, order)) = &shuffled {
                for &k in &order[sec.start as usize..(sec.start + sec.size) as usize] {
                    next += 1;
                    let student = first + u64::from(k);
                    let _ = write!(
                        out.row(),
                        "enr-{next:08},,,{class},{school},stu-{student:07},student,false,,"
                    );
                    out.end_row()?;
                }
            }
        }
    }
    Ok((out.finish()?, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_total_is_exact_and_teachers_cover_every_school() {
        for users in [40, 1_000, 12_345] {
            let opts = GenOptions {
                users,
                ..GenOptions::default()
            };
            let p = plan(&opts).expect("plan");
            let teachers: u64 = p.schools.iter().map(|s| s.teachers).sum();
            let total = p.students + teachers + 1 + p.schools.len() as u64;
            assert_eq!(total, users);
            assert!(p.schools.iter().all(|s| s.teachers >= 1));
        }
    }

    #[test]
    fn classes_hold_20_to_35_students_when_cohorts_allow() {
        let p = plan(&GenOptions {
            users: 20_000,
            ..GenOptions::default()
        })
        .expect("plan");
        for s in &p.schools {
            for sec in layout(p.seed, s).sections {
                assert!((20..=35).contains(&sec.size), "section of {}", sec.size);
            }
        }
    }

    #[test]
    fn too_few_users_is_an_error() {
        let err = plan(&GenOptions {
            users: 5,
            ..GenOptions::default()
        })
        .err();
        assert!(matches!(
            err,
            Some(GenError::TooFewUsers {
                min: 13,
                schools: 1
            })
        ));
    }
}
