//! What `weir verify` accepts and how it rewrites a job for each of its runs: the
//! reference run and the run with crashes write to their own checkpoints, state and
//! outputs, so the two can be compared.
//!
//! ```text
//!  job file ──▶ refusals (non-deterministic input, output that cannot be compared)
//!           ──▶ rewrite(role): checkpoints, savepoints, RocksDB dir, sink outputs, Kafka groups
//! ```

use std::path::{Path, PathBuf};
use weir_jobfile::{JobPlan, KafkaGuarantee, SinkKind, SinkSpec, SourceKind};

/// Which of the two runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The run without faults.
    Reference,
    /// The run that is crashed again and again.
    Crashes,
}

impl Role {
    /// Its name in paths, topics and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Reference => "reference",
            Self::Crashes => "crashes",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "reference" => Ok(Self::Reference),
            "crashes" => Ok(Self::Crashes),
            other => Err(format!(
                "unknown verify role `{other}`: expected reference or crashes"
            )),
        }
    }
}

/// Where one verification keeps everything, per role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Local scratch: RocksDB state, savepoints, local outputs.
    pub local: PathBuf,
    /// Checkpoints and object-store outputs: `local` again, or a URL (`s3://…`).
    pub storage: String,
    /// Unique to this verification: in topic and group names.
    pub nonce: String,
}

impl Layout {
    fn remote(&self) -> bool {
        self.storage.contains("://")
    }

    /// The checkpoint storage of `role`.
    pub fn checkpoints(&self, role: Role) -> String {
        format!("{}/{}/checkpoints", self.storage, role.name())
    }

    /// Savepoints of `role` (none are taken; the engine wants a place).
    pub fn savepoints(&self, role: Role) -> PathBuf {
        self.local.join(role.name()).join("savepoints")
    }

    /// The RocksDB directory of `role`.
    pub fn state(&self, role: Role) -> PathBuf {
        self.local.join(role.name()).join("state")
    }

    /// Where file sink `sink` of `role` writes: a local directory when the job's sink
    /// writes one and the storage is local (the epoch-file sink), else a URL under the
    /// storage (the object-store sink).
    pub fn file_output(&self, role: Role, sink: &str, job_path: &str) -> String {
        let local = self.local.join(role.name()).join("out").join(sink);
        match (job_path.contains("://"), self.remote()) {
            (_, true) => format!("{}/{}/out/{sink}", self.storage, role.name()),
            (true, false) => format!("file://{}", absolute(&local).display()),
            (false, false) => local.display().to_string(),
        }
    }

    /// The log (standard error) of incarnation `n` (from 1) of `role`: kept with the
    /// outputs when a verification fails, to explain the difference.
    pub fn log(&self, role: Role, n: u32) -> PathBuf {
        self.local
            .join(role.name())
            .join("logs")
            .join(format!("{n:04}.log"))
    }

    /// The topic Kafka sink writing `topic` writes in `role`.
    pub fn topic(&self, role: Role, topic: &str) -> String {
        format!("{topic}-verify-{}-{}", self.nonce, role.name())
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::env::current_dir()
        .map(|dir| dir.join(path))
        .unwrap_or_else(|_| path.to_path_buf())
}

/// Why `plan` cannot be verified, one reason per line (empty: it can). Verifying
/// compares two runs' committed output, so the input must be the same in both runs,
/// and the output must be exactly-once and readable back.
pub fn refusals(plan: &JobPlan) -> Vec<String> {
    let mut reasons = Vec::new();
    for source in &plan.spec.sources {
        let name = &source.node.name.value;
        if let SourceKind::Kafka {
            topic,
            earliest,
            bounded,
            ..
        } = &source.kind
        {
            if !bounded {
                reasons.push(format!(
                    "source `{name}` reads Kafka topic `{topic}` without `bounded: true`: the job never ends, so there is no final output to compare"
                ));
            }
            if !earliest {
                reasons.push(format!(
                    "source `{name}` starts at the latest offsets of `{topic}`: each run would read different records (set `start: earliest`)"
                ));
            }
        }
        if source
            .watermark
            .as_ref()
            .is_some_and(|w| w.idle_timeout.is_some())
        {
            reasons.push(format!(
                "source `{name}` has a watermark `idle_timeout`: idleness is decided by wall-clock time, so which records are late differs between runs"
            ));
        }
    }
    let mut comparable = 0;
    for sink in &plan.spec.sinks {
        let name = &sink.node.name.value;
        match &sink.kind {
            SinkKind::Stdout => reasons.push(format!(
                "sink `{name}` writes to standard output, which has no committed output to compare (use a `file` or exactly-once `kafka` sink)"
            )),
            SinkKind::Kafka { guarantee, .. } if *guarantee != KafkaGuarantee::ExactlyOnce => {
                reasons.push(format!(
                    "sink `{name}` is a Kafka sink without `guarantee: exactly_once`: its output repeats records after a crash by design"
                ))
            }
            SinkKind::Kafka { .. } | SinkKind::File { .. } => comparable += 1,
            SinkKind::Blackhole => {}
        }
    }
    if comparable == 0 && reasons.is_empty() {
        reasons.push(
            "the job has no `file` or exactly-once `kafka` sink: there is no committed output to compare"
                .into(),
        );
    }
    reasons
}

/// Points `sink` at `role`'s output: its own directory, object prefix or topic.
pub fn rewrite_sink(sink: &mut SinkSpec, layout: &Layout, role: Role) {
    let name = sink.node.name.value.as_str();
    match &mut sink.kind {
        SinkKind::File { path } => *path = layout.file_output(role, name, path),
        SinkKind::Kafka { topic, .. } => *topic = layout.topic(role, topic),
        SinkKind::Stdout | SinkKind::Blackhole => {}
    }
}

/// Points `plan` at `role`'s checkpoints, outputs and consumer groups, and sets its
/// state backend.
pub fn rewrite(
    plan: &mut JobPlan,
    layout: &Layout,
    role: Role,
    backend: weir_jobfile::StateBackend,
) {
    plan.spec.checkpoints.storage = layout.checkpoints(role);
    plan.spec.state_backend = backend;
    for sink in &mut plan.spec.sinks {
        rewrite_sink(sink, layout, role);
    }
    for sink in &mut plan.sinks {
        rewrite_sink(&mut sink.spec, layout, role);
    }
    let group =
        |group: &mut String| *group = format!("{group}-verify-{}-{}", layout.nonce, role.name());
    for source in &mut plan.spec.sources {
        if let SourceKind::Kafka { group: g, .. } = &mut source.kind {
            group(g);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_jobfile::Registry;

    fn plan(text: &str) -> JobPlan {
        weir_jobfile::load("job.yaml", text, &Registry::default()).unwrap()
    }

    const COUNTING: &str = "
name: counting
sources:
  - {name: numbers, kind: sequence, from: 1, to: 1000, timestamp: value}
operators:
  - {name: classes, kind: map, input: numbers, fields: {class: value % 7, value: value}}
  - {name: by_class, kind: key_by, input: classes, key: class}
  - name: per_class
    kind: window
    input: by_class
    window: {type: tumbling, size: 5s}
    aggregates: {numbers: count}
sinks:
  - {name: out, kind: file, input: per_class, path: ./out}
";

    #[test]
    fn a_deterministic_job_with_a_file_sink_is_accepted_and_every_run_writes_apart() {
        let mut job = plan(COUNTING);
        assert_eq!(refusals(&job), Vec::<String>::new());
        let layout = Layout {
            local: "/tmp/v".into(),
            storage: "s3://bucket/v".into(),
            nonce: "n1".into(),
        };
        rewrite(
            &mut job,
            &layout,
            Role::Crashes,
            weir_jobfile::StateBackend::Heap,
        );
        assert_eq!(
            job.spec.checkpoints.storage,
            "s3://bucket/v/crashes/checkpoints"
        );
        let SinkKind::File { path } = &job.sinks[0].spec.kind else {
            panic!("a file sink")
        };
        assert_eq!(path, "s3://bucket/v/crashes/out/out");
        let local = Layout {
            storage: "/tmp/v".into(),
            ..layout
        };
        assert_eq!(
            local.file_output(Role::Reference, "out", "./out"),
            "/tmp/v/reference/out/out"
        );
        assert_eq!(
            local.file_output(Role::Reference, "out", "file:///x"),
            "file:///tmp/v/reference/out/out"
        );
    }

    #[test]
    fn input_that_differs_between_runs_and_output_that_cannot_be_compared_are_refused() {
        let stdout = plan(&COUNTING.replace(
            "kind: file, input: per_class, path: ./out",
            "kind: stdout, input: per_class",
        ));
        let reasons = refusals(&stdout);
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(
            reasons[0].contains("sink `out` writes to standard output"),
            "{reasons:?}"
        );

        let kafka = plan(
            "
name: k
sources:
  - name: lines
    kind: kafka
    bootstrap: 127.0.0.1:9092
    topic: input
    start: latest
    format: text
sinks:
  - {name: out, kind: kafka, input: lines, bootstrap: 127.0.0.1:9092, topic: out, guarantee: at_least_once}
",
        );
        let reasons = refusals(&kafka).join("\n");
        assert!(reasons.contains("without `bounded: true`"), "{reasons}");
        assert!(
            reasons.contains("starts at the latest offsets of `input`"),
            "{reasons}"
        );
        assert!(
            reasons.contains("sink `out` is a Kafka sink without `guarantee: exactly_once`"),
            "{reasons}"
        );
    }
}
