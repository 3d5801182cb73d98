//! rollcall's library: everything the `rollcall` command and the Lambda functions share. It reads OneRoster 1.1
//! bundles (zip, folder or single CSV), validates them into a report a district admin can act on, plans what a
//! bundle changes in a tenant's roster, guards against bad exports, applies with provenance and undo on a store,
//! and generates synthetic districts for demos, tests and benchmarks. It has no Lambda or AWS dependency.

pub mod apply;
pub mod csvread;
pub mod edit;
pub mod fields;
pub mod finding;
pub mod generate;
pub mod index;
pub mod input;
pub mod limits;
pub mod manifest;
pub mod model;
pub mod plan;
pub mod progress;
pub mod report;
pub mod rows;
pub mod spec;
pub mod store;
pub mod suggest;
pub mod sync;
pub mod validate;

pub use finding::{Code, Finding, Severity};
pub use input::{Bundle, InputError};
pub use limits::Limits;
pub use progress::{NoProgress, Progress};
pub use report::{Report, Style};
pub use validate::{validate_bundle, validate_path};
