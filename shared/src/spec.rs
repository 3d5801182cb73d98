//! The OneRoster 1.1 CSV binding as data: the 13 data files, their columns in spec order, which are required
//! and what type each holds. Everything that checks or reads a file works from these tables.

use std::fmt;

/// One of the 13 data files of a OneRoster 1.1 CSV bundle (the manifest is handled on its own).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileKind {
    AcademicSessions,
    Categories,
    Classes,
    ClassResources,
    Courses,
    CourseResources,
    Demographics,
    Enrollments,
    LineItems,
    Orgs,
    Resources,
    Results,
    Users,
}

impl FileKind {
    /// Every data file, in the order the spec lists them (alphabetical).
    pub const ALL: [FileKind; 13] = [
        FileKind::AcademicSessions,
        FileKind::Categories,
        FileKind::Classes,
        FileKind::ClassResources,
        FileKind::Courses,
        FileKind::CourseResources,
        FileKind::Demographics,
        FileKind::Enrollments,
        FileKind::LineItems,
        FileKind::Orgs,
        FileKind::Resources,
        FileKind::Results,
        FileKind::Users,
    ];

    /// The order in which files are read, so that every cross-file reference points at a file already read.
    pub const DEPENDENCY_ORDER: [FileKind; 13] = [
        FileKind::Orgs,
        FileKind::AcademicSessions,
        FileKind::Courses,
        FileKind::Classes,
        FileKind::Users,
        FileKind::Demographics,
        FileKind::Enrollments,
        FileKind::Categories,
        FileKind::Resources,
        FileKind::LineItems,
        FileKind::Results,
        FileKind::ClassResources,
        FileKind::CourseResources,
    ];

    /// The entity name as OneRoster spells it (`academicSessions`), also the manifest key suffix.
    pub fn name(self) -> &'static str {
        match self {
            FileKind::AcademicSessions => "academicSessions",
            FileKind::Categories => "categories",
            FileKind::Classes => "classes",
            FileKind::ClassResources => "classResources",
            FileKind::Courses => "courses",
            FileKind::CourseResources => "courseResources",
            FileKind::Demographics => "demographics",
            FileKind::Enrollments => "enrollments",
            FileKind::LineItems => "lineItems",
            FileKind::Orgs => "orgs",
            FileKind::Resources => "resources",
            FileKind::Results => "results",
            FileKind::Users => "users",
        }
    }

    /// The exact file name inside a bundle (`academicSessions.csv`).
    pub fn file_name(self) -> &'static str {
        match self {
            FileKind::AcademicSessions => "academicSessions.csv",
            FileKind::Categories => "categories.csv",
            FileKind::Classes => "classes.csv",
            FileKind::ClassResources => "classResources.csv",
            FileKind::Courses => "courses.csv",
            FileKind::CourseResources => "courseResources.csv",
            FileKind::Demographics => "demographics.csv",
            FileKind::Enrollments => "enrollments.csv",
            FileKind::LineItems => "lineItems.csv",
            FileKind::Orgs => "orgs.csv",
            FileKind::Resources => "resources.csv",
            FileKind::Results => "results.csv",
            FileKind::Users => "users.csv",
        }
    }

    /// The file kind for an exact file name.
    pub fn from_file_name(name: &str) -> Option<FileKind> {
        FileKind::ALL.into_iter().find(|k| k.file_name() == name)
    }

    /// The file kind whose name matches ignoring case (`Users.csv`), for a did-you-mean.
    pub fn from_file_name_ignore_case(name: &str) -> Option<FileKind> {
        FileKind::ALL
            .into_iter()
            .find(|k| k.file_name().eq_ignore_ascii_case(name))
    }

    /// The file kind for an entity name (`users`), as used by manifest keys.
    pub fn from_name(name: &str) -> Option<FileKind> {
        FileKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The columns of this file in spec order.
    pub fn columns(self) -> &'static [Column] {
        match self {
            FileKind::AcademicSessions => ACADEMIC_SESSIONS,
            FileKind::Categories => CATEGORIES,
            FileKind::Classes => CLASSES,
            FileKind::ClassResources => CLASS_RESOURCES,
            FileKind::Courses => COURSES,
            FileKind::CourseResources => COURSE_RESOURCES,
            FileKind::Demographics => DEMOGRAPHICS,
            FileKind::Enrollments => ENROLLMENTS,
            FileKind::LineItems => LINE_ITEMS,
            FileKind::Orgs => ORGS,
            FileKind::Resources => RESOURCES,
            FileKind::Results => RESULTS,
            FileKind::Users => USERS,
        }
    }

    /// Whether any column of any file refers to records of this file (so its ids must be looked up).
    pub fn is_referenced(self) -> bool {
        FileKind::ALL
            .iter()
            .flat_map(|k| k.columns())
            .any(|c| match c.ty {
                ColumnType::Ref(t) | ColumnType::RefList(t) => t == self,
                ColumnType::SchoolRef => self == FileKind::Orgs,
                _ => false,
            })
    }

    /// Position of a column in spec order, when the file has it.
    pub fn try_position(self, column: &str) -> Option<usize> {
        self.columns().iter().position(|c| c.name == column)
    }

    /// Position of a column in spec order. Panics only on a programming error (a name not in the table).
    pub fn position(self, column: &str) -> usize {
        self.columns()
            .iter()
            .position(|c| c.name == column)
            .unwrap_or_else(|| panic!("{column} is not a column of {}", self.file_name()))
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.file_name())
    }
}

/// How a file is to be applied, from `manifest.csv`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// The file is the complete set of that entity.
    Bulk,
    /// The file lists only changed records.
    Delta,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Bulk => "bulk",
            Mode::Delta => "delta",
        }
    }
}

/// What a column holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    /// The record's own sourcedId.
    Guid,
    /// `active` / `tobedeleted` (blank in bulk files).
    Status,
    /// ISO 8601 UTC date-time (blank in bulk files).
    DateTime,
    /// `YYYY-MM-DD`.
    Date,
    /// `YYYY`.
    Year,
    /// `true` / `false`.
    Bool,
    /// A decimal number.
    Float,
    /// Free text.
    Text,
    /// Comma-separated free text.
    TextList,
    /// One value of a fixed vocabulary.
    Enum(&'static [&'static str]),
    /// Comma-separated values of a fixed vocabulary.
    EnumList(&'static [&'static str]),
    /// Comma-separated CEDS grade codes.
    Grades,
    /// Comma-separated `{type:identifier}` items.
    UserIds,
    /// One sourcedId of a record in another (or the same) file.
    Ref(FileKind),
    /// One sourcedId of an org whose type is `school`.
    SchoolRef,
    /// Comma-separated sourcedIds of records in another (or the same) file.
    RefList(FileKind),
}

/// One column of a data file.
#[derive(Clone, Copy, Debug)]
pub struct Column {
    pub name: &'static str,
    pub required: bool,
    pub ty: ColumnType,
}

const fn req(name: &'static str, ty: ColumnType) -> Column {
    Column {
        name,
        required: true,
        ty,
    }
}

const fn opt(name: &'static str, ty: ColumnType) -> Column {
    Column {
        name,
        required: false,
        ty,
    }
}

pub const STATUS_VALUES: &[&str] = &["active", "tobedeleted"];
pub const SESSION_TYPES: &[&str] = &["gradingPeriod", "semester", "schoolYear", "term"];
pub const CLASS_TYPES: &[&str] = &["homeroom", "scheduled"];
pub const ORG_TYPES: &[&str] = &[
    "department",
    "school",
    "district",
    "local",
    "state",
    "national",
];
pub const USER_ROLES: &[&str] = &[
    "administrator",
    "aide",
    "guardian",
    "parent",
    "proctor",
    "relative",
    "student",
    "teacher",
];
pub const ENROLLMENT_ROLES: &[&str] = &["administrator", "proctor", "student", "teacher"];
pub const SEX_VALUES: &[&str] = &["male", "female"];
pub const IMPORTANCE_VALUES: &[&str] = &["primary", "secondary"];
pub const SCORE_STATUS_VALUES: &[&str] = &[
    "exempt",
    "fully graded",
    "not submitted",
    "partially graded",
    "submitted",
];
/// CEDS "Entry Grade Level" codes.
pub const GRADES: &[&str] = &[
    "IT", "PR", "PK", "TK", "KG", "01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11",
    "12", "13", "PS", "UG", "Other",
];

use ColumnType as T;

const SOURCED_ID: Column = req("sourcedId", T::Guid);
const STATUS: Column = opt("status", T::Status);
const DATE_LAST_MODIFIED: Column = opt("dateLastModified", T::DateTime);

static ACADEMIC_SESSIONS: &[Column] = &[
    SOURCED_ID,
    STATUS,
    DATE_LAST_MODIFIED,
    req("title", T::Text),
    req("type", T::Enum(SESSION_TYPES)),
    req("startDate", T::Date),
    req("endDate", T::Date),
    opt("parentSourcedId", T::Ref(FileKind::AcademicSessions)),
    req("schoolYear", T::Year),
];

static CATEGORIES: &[Column] = &[
    SOURCED_ID,
    STATUS,
    DATE_LAST_MODIFIED,
    req("title", T::Text),
];

static CLASSES: &[Column] = &[
    SOURCED_ID,
    STATUS,
    DATE_LAST_MODIFIED,
    req("title", T::Text),
    opt("grades", T::Grades),
    req("courseSourcedId", T::Ref(FileKind::Courses)),
    opt("classCode", T::Text),
    req("classType", T::Enum(CLASS_TYPES)),
    opt("location", T::Text),
    req("schoolSourcedId", T::SchoolRef),
    req("termSourcedIds", T::RefList(FileKind::AcademicSessions)),
    opt("subjects", T::TextList),
    opt("subjectCodes", T::TextList),
    opt("periods", T::TextList),
];

static CLASS_RESOURCES: &[Column] = &[
    SOURCED_ID,
    STATUS,
    DATE_LAST_MODIFIED,
    opt("title", T::Text),
    req("classSourcedId", T::Ref(FileKind::Classes)),
    req("resourceSourcedId", T::Ref(FileKind::Resources)),
];

static COURSES: &[Column] = &[
    SOURCED_ID,
    STATUS,
    DATE_LAST_MODIFIED,
    opt("schoolYearSourcedId", T::Ref(FileKind::AcademicSessions)),
    req("title", T::Text),
    opt("courseCode", T::Text),
    opt("grades", T::Grades),
    req("orgSourcedId", T::Ref(FileKind::Orgs)),
    opt("subjects", T::TextList),
    opt("subjectCodes", T::TextList),
];

static COURSE_RESOURCES: &[Column] = &[
    SOURCED_ID,
    STATUS,
    DATE_LAST_MODIFIED,
    opt("title", T::Text),
    req("courseSourcedId", T::Ref(FileKind::Courses)),
    req("resourceSourcedId", T::Ref(FileKind::Resources)),
];

static DEMOGRAPHICS: &[Column] = &[
    // A demographics record's sourcedId is the sourcedId of the user it describes.
    SOURCED_ID,
    STATUS,
    DATE_LAST_MODIFIED,
    opt("birthDate", T::Date),
    opt("sex", T::Enum(SEX_VALUES)),
    opt("americanIndianOrAlaskaNative", T::Bool),
    opt("asian", T::Bool),
    opt("blackOrAfricanAmerican", T::Bool),
    opt("nativeHawaiianOrOtherPacificIslander", T::Bool),
    opt("white", T::Bool),
    opt("demographicRaceTwoOrMoreRaces", T::Bool),
    opt("hispanicOrLatinoEthnicity", T::Bool),
    opt("countryOfBirthCode", T::Text),
    opt("stateOfBirthAbbreviation", T::Text),
    opt("cityOfBirth", T::Text),
    opt("publicSchoolResidenceStatus", T::Text),
];

static ENROLLMENTS: &[Column] = &[
    SOURCED_ID,
    STATUS,
    DATE_LAST_MODIFIED,
    req("classSourcedId", T::Ref(FileKind::Classes)),
    req("schoolSourcedId", T::SchoolRef),
    req("userSourcedId", T::Ref(FileKind::Users)),
    req("role", T::Enum(ENROLLMENT_ROLES)),
    opt("primary", T::Bool),
    opt("beginDate", T::Date),
    opt("endDate", T::Date),
];

static LINE_ITEMS: &[Column] = &[
    SOURCED_ID,
    STATUS,
    DATE_LAST_MODIFIED,
    req("title", T::Text),
    opt("description", T::Text),
    req("assignDate", T::Date),
    req("dueDate", T::Date),
    req("classSourcedId", T::Ref(FileKind::Classes)),
    req("categorySourcedId", T::Ref(FileKind::Categories)),
    req("gradingPeriodSourcedId", T::Ref(FileKind::AcademicSessions)),
    req("resultValueMin", T::Float),
    req("resultValueMax", T::Float),
];

static ORGS: &[Column] = &[
    SOURCED_ID,
    STATUS,
    DATE_LAST_MODIFIED,
    req("name", T::Text),
    req("type", T::Enum(ORG_TYPES)),
    opt("identifier", T::Text),
    opt("parentSourcedId", T::Ref(FileKind::Orgs)),
];

static RESOURCES: &[Column] = &[
    SOURCED_ID,
    STATUS,
    DATE_LAST_MODIFIED,
    req("vendorResourceId", T::Text),
    opt("title", T::Text),
    opt("roles", T::EnumList(USER_ROLES)),
    opt("importance", T::Enum(IMPORTANCE_VALUES)),
    opt("vendorId", T::Text),
    opt("applicationId", T::Text),
];

static RESULTS: &[Column] = &[
    SOURCED_ID,
    STATUS,
    DATE_LAST_MODIFIED,
    req("lineItemSourcedId", T::Ref(FileKind::LineItems)),
    req("studentSourcedId", T::Ref(FileKind::Users)),
    req("scoreStatus", T::Enum(SCORE_STATUS_VALUES)),
    req("score", T::Float),
    req("scoreDate", T::Date),
    opt("comment", T::Text),
];

static USERS: &[Column] = &[
    SOURCED_ID,
    STATUS,
    DATE_LAST_MODIFIED,
    req("enabledUser", T::Bool),
    req("orgSourcedIds", T::RefList(FileKind::Orgs)),
    req("role", T::Enum(USER_ROLES)),
    req("username", T::Text),
    opt("userIds", T::UserIds),
    req("givenName", T::Text),
    req("familyName", T::Text),
    opt("middleName", T::Text),
    opt("identifier", T::Text),
    opt("email", T::Text),
    opt("sms", T::Text),
    opt("phone", T::Text),
    opt("agentSourcedIds", T::RefList(FileKind::Users)),
    opt("grades", T::Grades),
    opt("password", T::Text),
];

/// Header names that people commonly write instead of the 1.1 name: OneRoster 1.0 names, REST field names and
/// singular/plural slips. Maps (file, wrong name) to the right name and why.
pub fn known_misspelling(kind: FileKind, header: &str) -> Option<(&'static str, &'static str)> {
    use FileKind as F;
    let found = match (kind, header) {
        (F::Demographics, "userSourcedId") => (
            "sourcedId",
            "OneRoster 1.1 renamed the 1.0 column userSourcedId to sourcedId",
        ),
        (F::Demographics, "birthdate") => (
            "birthDate",
            "OneRoster 1.1 spells it birthDate, with a capital D",
        ),
        (F::Users, "orgSourcedId") => ("orgSourcedIds", "the column is plural in OneRoster 1.1"),
        (F::Users, "agentSourcedId") => {
            ("agentSourcedIds", "the column is plural in OneRoster 1.1")
        }
        (F::Users, "orgs") => (
            "orgSourcedIds",
            "orgs is the REST field name, not the CSV header",
        ),
        (F::Users, "agents") => (
            "agentSourcedIds",
            "agents is the REST field name, not the CSV header",
        ),
        (F::Users, "userId") => ("userIds", "the column is plural in OneRoster 1.1"),
        (F::Classes, "termSourcedId") => {
            ("termSourcedIds", "the column is plural in OneRoster 1.1")
        }
        (F::Classes, "terms") => (
            "termSourcedIds",
            "terms is the REST field name, not the CSV header",
        ),
        (F::Classes, "course") => (
            "courseSourcedId",
            "course is the REST field name, not the CSV header",
        ),
        (F::Classes | F::Enrollments, "school") => (
            "schoolSourcedId",
            "school is the REST field name, not the CSV header",
        ),
        (F::Enrollments, "class") => (
            "classSourcedId",
            "class is the REST field name, not the CSV header",
        ),
        (F::Enrollments, "user") => (
            "userSourcedId",
            "user is the REST field name, not the CSV header",
        ),
        (F::Orgs | F::AcademicSessions, "parent") => (
            "parentSourcedId",
            "parent is the REST field name, not the CSV header",
        ),
        (F::Courses, "org") => (
            "orgSourcedId",
            "org is the REST field name, not the CSV header",
        ),
        (F::Courses, "schoolYear") => (
            "schoolYearSourcedId",
            "courses reference their school year by sourcedId",
        ),
        (F::Users | F::Classes | F::Courses, "grade") => {
            ("grades", "the column is plural in OneRoster 1.1")
        }
        _ => return None,
    };
    Some(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_has_the_three_common_columns_first() {
        for kind in FileKind::ALL {
            let names: Vec<_> = kind.columns().iter().take(3).map(|c| c.name).collect();
            assert_eq!(names, ["sourcedId", "status", "dateLastModified"], "{kind}");
        }
    }

    #[test]
    fn column_counts_match_the_spec() {
        let counts: Vec<_> = FileKind::ALL.iter().map(|k| k.columns().len()).collect();
        assert_eq!(counts, [9, 4, 14, 6, 10, 6, 16, 10, 12, 7, 9, 9, 18]);
    }

    #[test]
    fn files_nobody_references() {
        let unreferenced: Vec<_> = FileKind::ALL
            .into_iter()
            .filter(|k| !k.is_referenced())
            .collect();
        assert_eq!(
            unreferenced,
            [
                FileKind::ClassResources,
                FileKind::CourseResources,
                FileKind::Demographics,
                FileKind::Enrollments,
                FileKind::Results
            ]
        );
    }

    #[test]
    fn dependency_order_reads_every_referenced_file_first() {
        for (i, kind) in FileKind::DEPENDENCY_ORDER.iter().enumerate() {
            for col in kind.columns() {
                let target = match col.ty {
                    ColumnType::Ref(t) | ColumnType::RefList(t) => t,
                    ColumnType::SchoolRef => FileKind::Orgs,
                    _ => continue,
                };
                let at = FileKind::DEPENDENCY_ORDER.iter().position(|k| *k == target);
                assert!(
                    at.is_some_and(|at| at <= i),
                    "{kind}.{} -> {target}",
                    col.name
                );
            }
        }
    }
}
