//! weir-sql: streaming SQL in Flink's dialect. A file of statements (`SET`,
//! `CREATE TABLE … WITH (…)`, `CREATE [TEMPORARY] VIEW`, `INSERT INTO … SELECT`,
//! a bare `SELECT`) compiles to the same [`JobSpec`] a job file decodes to, and so
//! to the same checked [`JobPlan`] and the same engine path (the columnar path of
//! job files). docs/sql.md lists what is supported.
//!
//! ```text
//!  file.sql ─▶ statements (sqlparser with FlinkDialect; CREATE TABLE and SET read
//!              │            here, on the parser's primitives)  ── statements.rs
//!              ▼
//!           catalog: tables (connector options, computed columns, watermark), views
//!              │
//!              ▼  queries planned into streams (lazy projections, windows from
//!           JobSpec   window TVFs, the per-window maximum join as `top`) ── plan.rs
//!              │
//!              ▼  weir_jobfile::check
//!           JobPlan ─▶ the job-file runner
//! ```
//!
//! Stream names, which are the uids savepoints use, derive from the statement: the
//! sink table's name (or the view's) and the step, e.g. `out_window`, so the same
//! statements restore from each other's savepoints.
#![deny(missing_docs)]

mod dialect;
mod explain;
mod expr;
mod plan;
mod statements;

use std::fmt;
use weir_jobfile::{JobPlan, JobSpec, Registry};

pub use dialect::FlinkDialect;

/// A problem in a SQL file: where, and what was expected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct SqlError {
    /// Line, from 1 (0: the whole file).
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

impl SqlError {
    pub(crate) fn at(at: weir_jobfile::yaml::Pos, message: impl Into<String>) -> Self {
        Self {
            line: at.line,
            column: at.column,
            message: message.into(),
        }
    }
}

/// A SQL file compiled to a job.
#[derive(Debug)]
pub struct SqlJob {
    /// The job as a job file would give it.
    pub spec: JobSpec,
}

/// Compiles the statements of `sql` to a job spec; `name` is the job's name
/// (`SET 'pipeline.name'` overrides it).
///
/// # Errors
/// The first problem, with its line and column.
pub fn compile(name: &str, sql: &str) -> Result<SqlJob, SqlError> {
    let statements = statements::read(sql)?;
    let spec = plan::plan(name, &statements)?;
    Ok(SqlJob { spec })
}

/// Compiles and checks the statements of `sql` (`file` names it in messages and,
/// without its extension, is the default job name).
///
/// # Errors
/// Each problem as `file:line:column: message`.
pub fn load(file: &str, sql: &str, registry: &Registry) -> Result<JobPlan, Vec<String>> {
    let name = std::path::Path::new(file)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("job");
    let job = compile(name, sql).map_err(|e| vec![format!("{file}:{e}")])?;
    weir_jobfile::check(file, job.spec, registry)
        .map_err(|e| e.problems().iter().map(|p| p.to_string()).collect())
}

/// Whether the file `name` holds SQL statements (it ends in `.sql`), rather than a
/// job file.
pub fn is_sql_file(name: &str) -> bool {
    std::path::Path::new(name)
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("sql"))
}

/// Reads and checks a file of SQL statements (`.sql`) or else a job file.
///
/// # Errors
/// Each problem as `file:line:column: message` (or why the file cannot be read).
pub fn load_file(path: &std::path::Path, registry: &Registry) -> Result<JobPlan, Vec<String>> {
    if !is_sql_file(&path.to_string_lossy()) {
        return weir_jobfile::load_file(path, registry)
            .map_err(|e| e.problems().iter().map(|p| p.to_string()).collect());
    }
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("{file}: cannot read the SQL file: {e}")])?;
    load(&file, &text, registry)
}

/// The plan of a checked job as text: one line a stream, with its inputs, its
/// step, its fields, and the uid its state has in checkpoints and savepoints.
pub fn explain(plan: &JobPlan) -> String {
    explain::explain(plan)
}
