//! The product's model of a district's roster: tenants and their policy, filters and thresholds; batches (one
//! bundle's journey from received to applied); records with the provenance of every field value; and the
//! per-entity counts a plan reports.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

use crate::spec::FileKind;

/// The entity types rollcall keeps, in the order the pipeline plans them (parents first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Entity {
    #[serde(rename = "orgs")]
    Orgs,
    #[serde(rename = "academicSessions")]
    AcademicSessions,
    #[serde(rename = "courses")]
    Courses,
    #[serde(rename = "classes")]
    Classes,
    #[serde(rename = "users")]
    Users,
    #[serde(rename = "demographics")]
    Demographics,
    #[serde(rename = "enrollments")]
    Enrollments,
}

impl Entity {
    /// Parents before children: the order records are created in (and the reverse is the order of archives).
    pub const ALL: [Entity; 7] = [
        Entity::Orgs,
        Entity::AcademicSessions,
        Entity::Courses,
        Entity::Classes,
        Entity::Users,
        Entity::Demographics,
        Entity::Enrollments,
    ];

    pub fn name(self) -> &'static str {
        self.file_kind().name()
    }

    pub fn file_kind(self) -> FileKind {
        match self {
            Entity::Orgs => FileKind::Orgs,
            Entity::AcademicSessions => FileKind::AcademicSessions,
            Entity::Courses => FileKind::Courses,
            Entity::Classes => FileKind::Classes,
            Entity::Users => FileKind::Users,
            Entity::Demographics => FileKind::Demographics,
            Entity::Enrollments => FileKind::Enrollments,
        }
    }

    pub fn parse(name: &str) -> Option<Entity> {
        Entity::ALL.into_iter().find(|e| e.name() == name)
    }

    /// Fields people may set by hand beyond the OneRoster columns.
    pub fn product_fields(self) -> &'static [&'static str] {
        match self {
            Entity::Users => &["primaryAdministrator"],
            _ => &[],
        }
    }
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a sync may do to manual work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// A sync never changes a manually edited field or a manually created or archived record; the SIS value
    /// is recorded beside it.
    #[default]
    PreserveManual,
    /// The SIS is authoritative for every record it sends: manual field edits are overwritten and records
    /// archived by hand come back.
    SisWins,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::PreserveManual => "preserve_manual",
            Policy::SisWins => "sis_wins",
        }
    }

    pub fn parse(text: &str) -> Option<Policy> {
        match text {
            "preserve_manual" => Some(Policy::PreserveManual),
            "sis_wins" => Some(Policy::SisWins),
            _ => None,
        }
    }
}

/// Where a tenant's bundles come from. A tenant is fed by one source only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    #[default]
    Sftp,
    Api,
}

/// Which records of the district a tenant takes. Empty lists mean "all".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filters {
    /// Schools by sourcedId or identifier.
    #[serde(default)]
    pub schools: Vec<String>,
    /// User roles (`student`, `teacher`, ...).
    #[serde(default)]
    pub roles: Vec<String>,
    /// CEDS grades of students.
    #[serde(default)]
    pub grades: Vec<String>,
}

impl Filters {
    pub fn is_empty(&self) -> bool {
        self.schools.is_empty() && self.roles.is_empty() && self.grades.is_empty()
    }

    /// `schools sch-1,sch-2; roles student`, or `none`.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = [
            ("schools", &self.schools),
            ("roles", &self.roles),
            ("grades", &self.grades),
        ]
        .into_iter()
        .filter(|(_, list)| !list.is_empty())
        .map(|(label, list)| format!("{label} {}", list.join(",")))
        .collect();
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join("; ")
        }
    }

    /// What is wrong with the filters' roles and grades, checked as a bundle's `role` and `grades` columns
    /// are (the same vocabulary, the same words); empty when nothing is.
    pub fn problems(&self) -> Vec<String> {
        use crate::spec::{GRADES, USER_ROLES};
        let mut problems = Vec::new();
        for (what, values, allowed) in [
            ("role", &self.roles, USER_ROLES),
            ("grade", &self.grades, GRADES),
        ] {
            for v in values {
                if let Err(p) = crate::validate::fields::one_of(v, allowed) {
                    let hint = p.hint.map(|h| format!(" ({h})")).unwrap_or_default();
                    problems.push(format!("{what} filter: {}{hint}", p.message));
                }
            }
        }
        problems
    }
}

/// When a sync is held for approval instead of applied.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Threshold {
    /// Hold when more than this fraction of an entity's active records would be archived.
    pub archive: f64,
    /// Hold when more than this fraction of an entity's active records would be updated.
    pub update: f64,
}

impl Default for Threshold {
    fn default() -> Threshold {
        Threshold {
            archive: 0.10,
            update: 0.75,
        }
    }
}

/// A district: its policy, scope and safeguards.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub policy: Policy,
    #[serde(default)]
    pub source: SourceKind,
    #[serde(default)]
    pub filters: Filters,
    /// Thresholds for every entity, unless overridden below.
    #[serde(default)]
    pub threshold: Threshold,
    /// Per-entity overrides.
    #[serde(default)]
    pub thresholds: BTreeMap<Entity, Threshold>,
    /// Whether people may create records by hand.
    #[serde(default = "yes")]
    pub manual_creation: bool,
    /// Where an API tenant's roster is pulled from (no secret: those are kept apart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<crate::pull::source::ApiSource>,
}

fn yes() -> bool {
    true
}

/// The longest tenant id.
pub const TENANT_ID_MAX: usize = 64;

/// Why a tenant id cannot be used, or `None` when it can. A tenant id becomes a folder of the blob store, an S3
/// prefix (`inbound/{tenant}/`, the tenant's SFTP home) and part of DynamoDB keys (`T#{tenant}`,
/// `R#{tenant}#users#07`), so it is held to a set that is the same in all of them: lowercase ASCII letters,
/// digits, `-` and `_`, starting with a letter or digit, at most 64 characters. That leaves out `/` and `..`
/// (paths), `#` (the keys' separator), upper case (folders that differ only in case on some systems), and
/// invisible or reordering characters (zero-width, bidi controls) that make two ids look alike.
pub fn tenant_id_problem(id: &str) -> Option<String> {
    let allowed = "lowercase letters a-z, digits, '-' and '_'";
    if id.is_empty() {
        return Some("a tenant id may not be empty".into());
    }
    let length = id.chars().count();
    if length > TENANT_ID_MAX {
        return Some(format!(
            "a tenant id is at most {TENANT_ID_MAX} characters; this one has {length}"
        ));
    }
    if let Some((at, c)) = id
        .chars()
        .enumerate()
        .find(|(_, c)| !matches!(c, 'a'..='z' | '0'..='9' | '-' | '_'))
    {
        return Some(format!(
            "a tenant id is made of {allowed} (it becomes an S3 prefix and part of DynamoDB keys); \
             character {} is {c:?}",
            at + 1
        ));
    }
    if !id.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Some("a tenant id starts with a letter or a digit".into());
    }
    None
}

impl Tenant {
    pub fn new(id: &str) -> Tenant {
        Tenant {
            id: id.to_string(),
            name: id.to_string(),
            policy: Policy::default(),
            source: SourceKind::default(),
            filters: Filters::default(),
            threshold: Threshold::default(),
            thresholds: BTreeMap::new(),
            manual_creation: true,
            api: None,
        }
    }

    pub fn threshold_for(&self, entity: Entity) -> Threshold {
        self.thresholds
            .get(&entity)
            .copied()
            .unwrap_or(self.threshold)
    }
}

/// Where a batch is in its journey.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchStatus {
    Received,
    Validated,
    Planned,
    Held,
    /// Its plan is being written; a run that died here is resumed by the tenant's next run.
    Applying,
    Applied,
    Rejected,
    /// A run stopped before it finished (and before anything was applied); the reason says why.
    Failed,
    /// Held, then another batch of the tenant was applied: its plan no longer fits the roster.
    Superseded,
    /// Being undone; a run that died here is resumed by the next rollback of the batch.
    RollingBack,
    RolledBack,
}

impl BatchStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BatchStatus::Received => "received",
            BatchStatus::Validated => "validated",
            BatchStatus::Planned => "planned",
            BatchStatus::Held => "held",
            BatchStatus::Applying => "applying",
            BatchStatus::Applied => "applied",
            BatchStatus::Rejected => "rejected",
            BatchStatus::Failed => "failed",
            BatchStatus::Superseded => "superseded",
            BatchStatus::RollingBack => "rolling_back",
            BatchStatus::RolledBack => "rolled_back",
        }
    }

    /// Nothing more happens to a batch in this state.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            BatchStatus::Applied
                | BatchStatus::Rejected
                | BatchStatus::Failed
                | BatchStatus::Superseded
                | BatchStatus::RolledBack
        )
    }

    pub fn parse(text: &str) -> Option<BatchStatus> {
        [
            BatchStatus::Received,
            BatchStatus::Validated,
            BatchStatus::Planned,
            BatchStatus::Held,
            BatchStatus::Applying,
            BatchStatus::Applied,
            BatchStatus::Rejected,
            BatchStatus::Failed,
            BatchStatus::Superseded,
            BatchStatus::RollingBack,
            BatchStatus::RolledBack,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// What a plan would do to one entity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub create: u64,
    pub update: u64,
    pub archive: u64,
    pub restore: u64,
    pub unchanged: u64,
    pub kept_manual: u64,
    pub out_of_scope: u64,
}

impl Counts {
    /// Records whose state changes: created, updated, archived or restored.
    pub fn changes(&self) -> u64 {
        self.create + self.update + self.archive + self.restore
    }

    /// The count a label names (`create`, `update`, ... as the JSON output spells them).
    fn slot(&mut self, label: &str) -> Option<&mut u64> {
        Some(match label {
            "create" => &mut self.create,
            "update" => &mut self.update,
            "archive" => &mut self.archive,
            "restore" => &mut self.restore,
            "unchanged" => &mut self.unchanged,
            "kept_manual" => &mut self.kept_manual,
            "out_of_scope" => &mut self.out_of_scope,
            _ => return None,
        })
    }

    /// Adds `n` to the count a label names.
    pub fn add(&mut self, label: &str, n: u64) {
        if let Some(slot) = self.slot(label) {
            *slot += n;
        }
    }

    /// Replaces what `planned` counted by what `landed` counted (a chunk's records as they were applied).
    pub fn rebase(&mut self, planned: &Counts, landed: &Counts) {
        for (mine, p, l) in [
            (&mut self.create, planned.create, landed.create),
            (&mut self.update, planned.update, landed.update),
            (&mut self.archive, planned.archive, landed.archive),
            (&mut self.restore, planned.restore, landed.restore),
            (&mut self.unchanged, planned.unchanged, landed.unchanged),
            (
                &mut self.kept_manual,
                planned.kept_manual,
                landed.kept_manual,
            ),
            (
                &mut self.out_of_scope,
                planned.out_of_scope,
                landed.out_of_scope,
            ),
        ] {
            *mine = mine.saturating_sub(p) + l;
        }
    }
}

/// One bundle sent to one tenant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// Derived from the tenant and the bundle's content (with a suffix when that content was synced before
    /// and the roster has moved on since).
    pub id: String,
    /// The tenant and bundle content fingerprint the id derives from: the same upload twice has the same one.
    #[serde(default)]
    pub content: String,
    pub tenant: String,
    /// Where the bundle came from (a path locally, an object key on AWS).
    pub source: String,
    pub status: BatchStatus,
    /// Seconds since the Unix epoch.
    pub received_at: u64,
    pub updated_at: u64,
    pub counts: BTreeMap<Entity, Counts>,
    pub held_reasons: Vec<String>,
    pub errors: u64,
    pub warnings: u64,
    /// Where the bundle is: its path as given, or the blob-store prefix of the kept copy of a held batch.
    pub bundle: String,
    /// The blob-store prefix of the staged plan (empty when nothing was staged).
    #[serde(default)]
    pub plan: String,
    /// The tenant's latest applied batch when this one was planned: if another is applied before this one,
    /// its plan no longer fits the roster.
    #[serde(default)]
    pub planned_after: Option<String>,
    /// Records that changed between planning and applying, and were merged again under the policy.
    #[serde(default)]
    pub moved: u64,
    /// Records written when the batch was applied.
    #[serde(default)]
    pub writes: u64,
    /// Why a batch failed or was superseded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// The validation report's findings by code (errors and warnings), so a rejection says why without the
    /// report at hand.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub findings_by_code: BTreeMap<String, u64>,
    /// The blob-store key of the kept validation report (`reports/{tenant}/{batch}/report.json`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub report: String,
}

/// Where one field's value came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum Provenance {
    /// Set by the SIS in this batch.
    Sis { batch: String },
    /// Set by hand.
    Manual { by: String, at: u64 },
}

/// Who made a record, or archived it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Sis,
    Manual,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Sis => "sis",
            Origin::Manual => "manual",
        }
    }
}

/// One roster record as rollcall keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub entity: Entity,
    pub sourced_id: String,
    /// The values in force (SIS values, or manual ones where they win).
    pub fields: BTreeMap<String, String>,
    /// The latest values the SIS sent, recorded even where a manual value is kept.
    pub sis_fields: BTreeMap<String, String>,
    /// Where each value in `fields` came from.
    pub provenance: BTreeMap<String, Provenance>,
    pub active: bool,
    /// Who created the record.
    pub origin: Origin,
    /// Who archived it, while it is archived.
    pub archived_by: Option<Origin>,
    /// The batch that last wrote it (`None` when last written by hand).
    pub batch: Option<String>,
    /// The batch that created it (`None` for a record created by hand).
    pub created_batch: Option<String>,
    /// Bumped by every write; every write states the version it read and fails if the record moved on.
    #[serde(default)]
    pub version: u64,
}

impl Record {
    /// Equal in everything but the version: writing one over the other would change nothing.
    pub fn same_content(&self, other: &Record) -> bool {
        self.entity == other.entity
            && self.sourced_id == other.sourced_id
            && self.fields == other.fields
            && self.sis_fields == other.sis_fields
            && self.provenance == other.provenance
            && self.active == other.active
            && self.origin == other.origin
            && self.archived_by == other.archived_by
            && self.batch == other.batch
            && self.created_batch == other.created_batch
    }

    /// Names of fields whose value in force was set by hand.
    pub fn manual_fields(&self) -> impl Iterator<Item = &str> {
        self.provenance
            .iter()
            .filter(|(_, p)| matches!(p, Provenance::Manual { .. }))
            .map(|(k, _)| k.as_str())
    }

    pub fn has_manual_fields(&self) -> bool {
        self.manual_fields().next().is_some()
    }

    /// Whether the record was last archived or restored by hand.
    pub fn manual_status(&self) -> bool {
        matches!(
            self.provenance.get(crate::apply::edit::STATUS_MARK),
            Some(Provenance::Manual { .. })
        )
    }
}

/// The `userIds` items of a user, as (type, identifier).
pub fn user_ids(text: &str) -> Vec<(String, String)> {
    text.split('}')
        .filter_map(|item| {
            let item = item.trim_start_matches([',', ' ']).strip_prefix('{')?;
            let (kind, id) = item.split_once(':')?;
            Some((kind.trim().to_string(), id.trim().to_string()))
        })
        .collect()
}

/// A stable 64-bit hash of a record's SIS values, to tell unchanged records without reading them.
pub fn content_hash(fields: &BTreeMap<String, String>) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for (k, v) in fields {
        h.update(k.as_bytes());
        h.update(&[0]);
        h.update(v.as_bytes());
        h.update(&[0]);
    }
    h.digest()
}

/// Seconds since the Unix epoch as ISO 8601 UTC (`2026-12-01T19:04:05Z`).
pub fn iso_time(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Days to a civil date (Howard Hinnant's algorithm, proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::iso_time;

    #[test]
    fn times_print_as_iso_8601_utc() {
        assert_eq!(iso_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso_time(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso_time(1_796_152_245), "2026-12-01T19:10:45Z");
    }
}
