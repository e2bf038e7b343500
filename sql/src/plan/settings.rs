//! `SET 'key' = 'value'`: Flink's configuration keys that weir honours.

use super::{Phases, Planner};
use crate::SqlError;
use std::time::Duration;
use weir_jobfile::yaml::Pos;
use weir_jobfile::{parse_duration, StateBackend};

/// A Flink duration option: `1s`, `1 s`, `500 ms`, `10 min`, or milliseconds.
fn flink_duration(text: &str) -> Option<Duration> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if let Ok(ms) = compact.parse::<u64>() {
        return Some(Duration::from_millis(ms));
    }
    let compact = compact
        .replace("millis", "ms")
        .replace("seconds", "s")
        .replace("second", "s")
        .replace("sec", "s")
        .replace("minutes", "min")
        .replace("minute", "min");
    parse_duration(&compact)
}

impl Planner<'_> {
    pub(super) fn set(&mut self, key: &str, value: &str, at: Pos) -> Result<(), SqlError> {
        let bad = |expected: &str| {
            SqlError::at(at, format!("SET '{key}' = '{value}': expected {expected}"))
        };
        match key {
            "parallelism.default" => {
                self.spec.parallelism = value
                    .parse()
                    .ok()
                    .filter(|&p| p > 0)
                    .ok_or_else(|| bad("a positive number"))?
            }
            "execution.checkpointing.interval" => {
                self.spec.checkpoints.interval =
                    flink_duration(value).ok_or_else(|| bad("a duration such as 1s or 500 ms"))?
            }
            "execution.checkpointing.timeout" => {
                self.spec.checkpoints.timeout =
                    flink_duration(value).ok_or_else(|| bad("a duration such as 60s"))?
            }
            "execution.checkpointing.dir" | "state.checkpoints.dir" => {
                self.spec.checkpoints.storage = value.to_string()
            }
            "state.checkpoints.num-retained" | "execution.checkpointing.num-retained" => {
                self.spec.checkpoints.retention = value
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| bad("a positive number"))?
            }
            "weir.checkpoints.standbys" => {
                self.spec.checkpoints.standbys =
                    value.parse().map_err(|_| bad("a non-negative number"))?
            }
            "state.backend.type" | "state.backend" => {
                self.spec.state_backend = match value {
                    "hashmap" | "heap" => StateBackend::Heap,
                    "rocksdb" => StateBackend::RocksDb,
                    _ => return Err(bad("hashmap or rocksdb")),
                }
            }
            "pipeline.name" => self.spec.name = value.to_string(),
            "table.optimizer.agg-phase-strategy" => {
                self.phases = match value.to_ascii_uppercase().as_str() {
                    "AUTO" => Phases::Auto,
                    "TWO_PHASE" => Phases::Two,
                    "ONE_PHASE" => Phases::One,
                    _ => return Err(bad("AUTO, ONE_PHASE or TWO_PHASE")),
                }
            }
            "table.exec.source.idle-timeout" => {
                self.idle_timeout =
                    Some(flink_duration(value).ok_or_else(|| bad("a duration such as 5s"))?)
            }
            "table.local-time-zone" => {
                if value != "UTC" {
                    return Err(bad("UTC (weir's timestamps are UTC milliseconds)"));
                }
            }
            _ => {
                return Err(SqlError::at(
                    at,
                    format!(
                        "unknown option '{key}': expected one of parallelism.default, \
                         execution.checkpointing.interval, execution.checkpointing.timeout, \
                         execution.checkpointing.dir (state.checkpoints.dir), \
                         state.checkpoints.num-retained, state.backend.type, pipeline.name, \
                         table.exec.source.idle-timeout, table.local-time-zone, \
                         table.optimizer.agg-phase-strategy"
                    ),
                ))
            }
        }
        Ok(())
    }
}
