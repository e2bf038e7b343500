//! The committed output of a run, per sink, and the difference of two runs' outputs
//! as multisets of rows.
//!
//! ```text
//!  epoch-file sink  ──▶ weir_sinks::read_committed          ─┐
//!  object-file sink ──▶ weir_sinks::read_committed_objects  ─┼─▶ rows as canonical text ──▶ Diff
//!  Kafka sink       ──▶ weir_sinks::kafka_log::committed_view┘   (Kafka: key and value)
//! ```

use anyhow::{anyhow, Context, Result};
use std::collections::HashMap;
use weir_jobfile::{SinkKind, SinkSpec};
use weir_sinks::FileSinkConfig;

/// The committed rows of one sink.
#[derive(Debug, Default)]
pub struct SinkOutput {
    /// The sink's name.
    pub sink: String,
    /// Each committed row as canonical text, in no particular order.
    pub rows: Vec<String>,
    /// Records of transactions left open (Kafka): not visible, so not in `rows`.
    pub open_transactions: usize,
}

/// Reads what every comparable sink of `sinks` (as rewritten for one run) committed.
///
/// # Errors
/// An output cannot be listed or read, or holds a row that is not JSON.
pub fn read(sinks: &[SinkSpec]) -> Result<Vec<SinkOutput>> {
    let mut outputs = Vec::new();
    for sink in sinks {
        let name = sink.node.name.value.clone();
        let mut output = SinkOutput {
            sink: name.clone(),
            ..SinkOutput::default()
        };
        match &sink.kind {
            SinkKind::File { path } if path.contains("://") => {
                let config = FileSinkConfig::new(path.clone());
                let rows: Vec<serde_json::Value> = weir_sinks::read_committed_objects(&config)
                    .with_context(|| {
                        format!("reading the committed output of sink `{name}` at {path}")
                    })?;
                output.rows = rows.iter().map(serde_json::Value::to_string).collect();
            }
            SinkKind::File { path } => {
                let dir = std::path::Path::new(path);
                let rows: Vec<serde_json::Value> = if dir.exists() {
                    weir_sinks::read_committed(dir).with_context(|| {
                        format!("reading the committed output of sink `{name}` in {path}")
                    })?
                } else {
                    Vec::new()
                };
                output.rows = rows.iter().map(serde_json::Value::to_string).collect();
            }
            SinkKind::Kafka {
                bootstrap, topic, ..
            } => {
                let view = weir_sinks::kafka_log::committed_view(bootstrap, topic).map_err(|e| {
                    anyhow!("reading the committed records of sink `{name}` in topic `{topic}` at {bootstrap}: {e}")
                })?;
                output.open_transactions = view.pending();
                output.rows = view
                    .records()
                    .map(|r| {
                        let text = |b: &Option<Vec<u8>>| {
                            b.as_deref()
                                .map(|b| String::from_utf8_lossy(b).into_owned())
                        };
                        format!(
                            "key={} value={}",
                            text(&r.key).unwrap_or_else(|| "-".into()),
                            text(&r.value).unwrap_or_default()
                        )
                    })
                    .collect();
            }
            SinkKind::Stdout | SinkKind::Blackhole => continue,
        }
        outputs.push(output);
    }
    Ok(outputs)
}

/// How a run's committed rows differ from the reference's, as multisets.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// Rows of the reference: the expected count.
    pub expected: usize,
    /// Rows the run committed.
    pub actual: usize,
    /// Reference rows missing from the run (counted with multiplicity).
    pub lost: usize,
    /// Rows the run committed more often than the reference did.
    pub duplicated: usize,
    /// A few rows of each kind, with how many were missing (negative) or extra.
    pub examples: Vec<(String, i64)>,
}

impl Diff {
    /// Compares `actual` with `expected`, keeping up to `examples` differing rows.
    pub fn of(expected: &[String], actual: &[String], examples: usize) -> Self {
        let mut counts: HashMap<&str, i64> = HashMap::new();
        for row in expected {
            *counts.entry(row).or_default() -= 1;
        }
        for row in actual {
            *counts.entry(row).or_default() += 1;
        }
        let mut diff = Self {
            expected: expected.len(),
            actual: actual.len(),
            ..Self::default()
        };
        let mut differing: Vec<(&str, i64)> = counts.into_iter().filter(|(_, n)| *n != 0).collect();
        differing.sort_unstable();
        for (_, n) in &differing {
            let n = *n;
            if n < 0 {
                diff.lost += n.unsigned_abs() as usize;
            } else {
                diff.duplicated += n as usize;
            }
        }
        diff.examples = differing
            .into_iter()
            .take(examples)
            .map(|(row, n)| (row.to_string(), n))
            .collect();
        diff
    }

    /// Whether the run committed exactly the reference's rows.
    pub fn is_exact(&self) -> bool {
        self.lost == 0 && self.duplicated == 0
    }
}

#[cfg(test)]
mod tests {
    use super::Diff;

    fn rows(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_diff_counts_missing_and_extra_rows_with_multiplicity_and_ignores_order() {
        let expected = rows(&["a", "b", "b", "c"]);
        assert!(Diff::of(&expected, &rows(&["c", "b", "a", "b"]), 5).is_exact());
        let diff = Diff::of(&expected, &rows(&["a", "b", "c", "c", "c", "d"]), 5);
        assert_eq!((diff.lost, diff.duplicated), (1, 3));
        assert_eq!(
            diff.examples,
            vec![
                ("b".to_string(), -1),
                ("c".to_string(), 2),
                ("d".to_string(), 1)
            ]
        );
        assert_eq!(
            Diff::of(&expected, &rows(&["a", "b", "c", "c", "c", "d"]), 1)
                .examples
                .len(),
            1
        );
    }
}
