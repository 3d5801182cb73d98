//! rollcall's library: everything the `rollcall` command and the Lambda functions share. It reads OneRoster 1.1
//! bundles (zip, folder or single CSV), validates them into a report a district admin can act on, and generates
//! synthetic districts for demos, tests and benchmarks. It has no Lambda or AWS dependency.

pub mod csvread;
pub mod fields;
pub mod finding;
pub mod generate;
pub mod index;
pub mod input;
pub mod limits;
pub mod manifest;
pub mod progress;
pub mod report;
pub mod spec;
pub mod suggest;
pub mod validate;

pub use finding::{Code, Finding, Severity};
pub use input::{Bundle, InputError};
pub use limits::Limits;
pub use progress::{NoProgress, Progress};
pub use report::{Report, Style};
pub use validate::{validate_bundle, validate_path};
