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
}

fn yes() -> bool {
    true
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
    Applied,
    Rejected,
    RolledBack,
}

impl BatchStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BatchStatus::Received => "received",
            BatchStatus::Validated => "validated",
            BatchStatus::Planned => "planned",
            BatchStatus::Held => "held",
            BatchStatus::Applied => "applied",
            BatchStatus::Rejected => "rejected",
            BatchStatus::RolledBack => "rolled_back",
        }
    }

    pub fn parse(text: &str) -> Option<BatchStatus> {
        [
            BatchStatus::Received,
            BatchStatus::Validated,
            BatchStatus::Planned,
            BatchStatus::Held,
            BatchStatus::Applied,
            BatchStatus::Rejected,
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
    /// Where the kept copy of the bundle is, for approval later.
    pub bundle: String,
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
}

impl Record {
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

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
