//! weir-jobfile: declarative weir jobs in YAML or JSON files — parsed into a typed
//! [`JobSpec`], checked as a whole and planned into a [`JobPlan`] whose every stream
//! has a known [`Schema`] of named, typed fields. The `weir` package turns a plan
//! into a running job (`weir run`); this crate has no engine dependency.
//!
//! ```text
//!  job.yaml ─▶ yaml::parse ─▶ Node tree (line:column per node)
//!                               │ decode: unknown fields, types, required settings
//!                               ▼
//!                            JobSpec ─▶ validate: stream references, cycles,
//!                               │        schemas, expressions, aggregates
//!                               ▼
//!                            JobPlan (streams in dependency order, Row schemas)
//!                               │
//!                               ▼  weir::jobs (JobBuilder, CheckpointedJob)
//!                            running job
//! ```
//!
//! Every problem is reported at once, as `file:line:column: path: message`:
//!
//! ```
//! use weir_jobfile::{load, Registry};
//! let text = "
//! sources:
//!   - {name: bids, kind: bids, events: 1000}
//! operators:
//!   - name: expensive
//!     kind: filter
//!     input: bids
//!     condition: price > 'a lot'
//!   - {name: by_auction, kind: key_by, input: bidz, key: auction}
//! sinks:
//!   - {name: out, kind: stdout, input: expensive}
//! ";
//! let problems = load("job.yaml", text, &Registry::default()).unwrap_err().problems();
//! let lines: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
//! assert_eq!(lines.len(), 2);
//! assert!(lines[0].starts_with("job.yaml:8:22: operators[0].condition: "));
//! assert!(lines[0].contains("cannot compare int with string"));
//! assert!(lines[1].starts_with("job.yaml:9:45: operators[1].input: undefined stream `bidz`"));
//!
//! let plan = load("job.yaml", &text.replace("bidz", "bids"), &Registry::default());
//! assert!(plan.is_err()); // still the bad condition
//! ```
#![deny(missing_docs)]

mod aggregate;
mod batch;
mod decode;
mod diagnostic;
mod expr;
mod registry;
mod row;
mod spec;
pub mod state_view;
mod validate;
pub mod yaml;

pub use aggregate::{Accumulator, Aggregate, NumAccumulator};
pub use batch::{Batch, Column, JsonWriter, KeyedRecord, Numbers, Projected, NUMBERS};
pub use decode::parse_duration;
pub use diagnostic::Diagnostic;
pub use expr::{EvalError, Expr, ExprError};
pub use registry::{BatchFunction, Binder, BoundFunction, Registry, RowFunction, Udf};
pub use row::{Field, FieldType, IntKey, Key, Row, RowKey, Schema, Str, Value};
pub use spec::*;
pub use validate::{
    source_schema, JobPlan, JoinKind, JoinPlan, PlannedSink, PlannedStream, Step, TopPlan,
    WindowPlan,
};

use diagnostic::Problems;
use std::path::Path;

/// Why a job file could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobFileError {
    /// The file could not be read.
    #[error("cannot read job file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file has problems: all of them, in file order.
    #[error("{}", .0.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Diagnostic>),
}

impl JobFileError {
    /// The problems found (one describing the read error for [`JobFileError::Read`]).
    pub fn problems(&self) -> Vec<Diagnostic> {
        match self {
            Self::Invalid(list) => list.clone(),
            Self::Read { path, source } => vec![Diagnostic {
                file: path.clone(),
                line: 0,
                column: 0,
                path: String::new(),
                message: format!("cannot read: {source}"),
            }],
        }
    }
}

/// Parses and validates job file text; `file` names it in messages (and, without
/// its extension, is the default job name). User-defined functions referenced by
/// `kind: udf` are looked up in `registry`.
///
/// # Errors
/// [`JobFileError::Invalid`] with every problem found.
pub fn load(file: &str, text: &str, registry: &Registry) -> Result<JobPlan, JobFileError> {
    let mut problems = Problems::new(file);
    let root = match yaml::parse(text) {
        Ok(root) => root,
        Err(e) => {
            problems.add(e.at, "", format!("malformed YAML/JSON: {}", e.message));
            return Err(JobFileError::Invalid(problems.sorted()));
        }
    };
    let default_name = Path::new(file)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("job");
    let Some(spec) = decode::job(&root, default_name, &mut problems) else {
        return Err(JobFileError::Invalid(problems.sorted()));
    };
    let plan = validate::plan(spec, registry, &mut problems);
    if problems.list.is_empty() {
        Ok(plan)
    } else {
        Err(JobFileError::Invalid(problems.sorted()))
    }
}

/// Validates a job built by another front end (SQL) as a job file's is; `file`
/// names it in messages, and positions are those the spec carries.
///
/// # Errors
/// [`JobFileError::Invalid`] with every problem found.
pub fn check(file: &str, spec: JobSpec, registry: &Registry) -> Result<JobPlan, JobFileError> {
    let mut problems = Problems::new(file);
    let plan = validate::plan(spec, registry, &mut problems);
    if problems.list.is_empty() {
        Ok(plan)
    } else {
        Err(JobFileError::Invalid(problems.sorted()))
    }
}

/// Reads and validates the job file at `path`.
///
/// # Errors
/// [`JobFileError::Read`] if it cannot be read, else as [`load`].
pub fn load_file(path: &Path, registry: &Registry) -> Result<JobPlan, JobFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| JobFileError::Read {
        path: path.display().to_string(),
        source,
    })?;
    load(&path.display().to_string(), &text, registry)
}
