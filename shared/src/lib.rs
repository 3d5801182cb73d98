//! rollcall's library: everything the `rollcall` command and the Lambda functions share, laid out by the stage
//! of the pipeline it serves. It reads OneRoster 1.1 bundles (`read`), validates them into a report a district
//! admin can act on (`validate`), plans what a bundle changes in a tenant's roster (`plan`), applies that plan
//! with provenance, versions and undo (`apply`), keeps state in a store (`store`) and staged data in a blob
//! store (`blob`), and generates synthetic districts for demos, tests and benchmarks (`generate`). `sync` runs
//! those stages one after the other for the local command. It has no Lambda or AWS dependency.

pub mod apply;
pub mod blob;
pub mod csvout;
pub mod generate;
pub mod index;
pub mod limits;
pub mod model;
pub mod plan;
pub mod progress;
pub mod pull;
pub mod read;
pub mod spec;
pub mod store;
pub mod sync;
pub mod validate;

pub use limits::Limits;
pub use progress::{NoProgress, Progress};
pub use read::bundle::{Bundle, InputError};
pub use validate::finding::{Code, Finding, Severity};
pub use validate::report::{Report, Style};
pub use validate::{validate_bundle, validate_path};
