//! What the REST API shows of a job: its graph with per-vertex rates, backpressure
//! and watermarks, its status names, and its checkpoint history — plain data,
//! computed from the engine's reports without I/O.

use super::registry::RecordedState;
use serde::Serialize;
use std::collections::HashMap;
use std::time::Instant;
use weir_dataflow::checkpointing::CheckpointStats;
use weir_dataflow::GraphView;
use weir_jobfile::{JobPlan, Step};

/// A vertex of the job graph.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VertexJson {
    /// Its id (edges refer to it).
    pub id: usize,
    /// Its name.
    pub name: String,
    /// Its stable uid.
    pub uid: String,
    /// Parallel subtasks.
    pub parallelism: usize,
    /// `source`, `operator` or `sink`.
    pub role: &'static str,
    /// Records received, all subtasks (sources: emitted).
    pub records_in: Option<u64>,
    /// Records emitted, all subtasks.
    pub records_out: Option<u64>,
    /// Records emitted per second over the last sampling interval (sinks: received).
    pub records_per_second: Option<f64>,
    /// Time blocked on full output channels, ms, all subtasks.
    pub backpressure_ms: Option<u64>,
    /// Share of the last sampling interval the subtasks spent blocked (0 to 1).
    pub backpressure: Option<f64>,
    /// The lowest watermark of its subtasks, ms of event time.
    pub watermark_ms: Option<i64>,
    /// Wall clock minus that watermark, ms.
    pub watermark_lag_ms: Option<i64>,
}

/// An edge of the job graph.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EdgeJson {
    /// Upstream vertex.
    pub from: usize,
    /// Downstream vertex.
    pub to: usize,
    /// `forward`, `hash`, `rebalance` or `broadcast`.
    pub kind: String,
    /// Whether both ends run in one thread (no channel between them).
    pub chained: bool,
}

/// The job graph.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GraphJson {
    /// Sources, operators and sinks.
    pub vertices: Vec<VertexJson>,
    /// How records flow between them.
    pub edges: Vec<EdgeJson>,
}

fn vertex(
    id: usize,
    name: &str,
    uid: Option<&str>,
    parallelism: usize,
    role: &'static str,
) -> VertexJson {
    VertexJson {
        id,
        name: name.to_string(),
        uid: uid.unwrap_or(name).to_string(),
        parallelism,
        role,
        records_in: None,
        records_out: None,
        records_per_second: None,
        backpressure_ms: None,
        backpressure: None,
        watermark_ms: None,
        watermark_lag_ms: None,
    }
}

/// The graph a job file declares (run at `parallelism` where the file does not set
/// one per operator): a vertex per source, operator and sink; a `key_by` is not a
/// vertex but the `hash` edge into its readers.
pub fn plan_graph(plan: &JobPlan, parallelism: Option<usize>) -> GraphJson {
    let default_parallelism = parallelism.unwrap_or(plan.spec.parallelism);
    let mut vertices = Vec::new();
    let mut ids: HashMap<&str, usize> = HashMap::new();
    // A key_by stream stands for its input, with a hash edge.
    let mut keyed: HashMap<&str, &str> = HashMap::new();
    for stream in &plan.streams {
        let name = stream.node.name.value.as_str();
        if matches!(stream.step, Step::KeyBy(_)) {
            if let Some(input) = stream.inputs.first() {
                keyed.insert(name, input.as_str());
            }
            continue;
        }
        let role = if matches!(stream.step, Step::Source(..)) {
            "source"
        } else {
            "operator"
        };
        ids.insert(name, vertices.len());
        vertices.push(vertex(
            vertices.len(),
            name,
            stream.node.uid.as_deref(),
            stream.node.parallelism.unwrap_or(default_parallelism),
            role,
        ));
    }
    let mut edges = Vec::new();
    let mut edge = |input: &str, to: usize, vertices: &[VertexJson]| {
        let (input, kind) = match keyed.get(input) {
            Some(&upstream) => (upstream, "hash"),
            None => (input, "forward"),
        };
        if let Some(&from) = ids.get(input) {
            let kind =
                if kind == "forward" && vertices[from].parallelism != vertices[to].parallelism {
                    "rebalance"
                } else {
                    kind
                };
            edges.push(EdgeJson {
                from,
                to,
                kind: kind.into(),
                chained: false,
            });
        }
    };
    for stream in &plan.streams {
        if let Some(&to) = ids.get(stream.node.name.value.as_str()) {
            for input in &stream.inputs {
                edge(input, to, &vertices);
            }
        }
    }
    for sink in &plan.sinks {
        let to = vertices.len();
        vertices.push(vertex(
            to,
            &sink.spec.node.name.value,
            sink.spec.node.uid.as_deref(),
            sink.spec.node.parallelism.unwrap_or(default_parallelism),
            "sink",
        ));
        edge(&sink.spec.input.value, to, &vertices);
    }
    GraphJson { vertices, edges }
}

/// The engine's graph of a running job.
pub fn engine_graph(graph: &GraphView) -> GraphJson {
    GraphJson {
        vertices: graph
            .vertices
            .iter()
            .map(|v| vertex(v.id, &v.name, Some(&v.uid), v.parallelism, v.role.as_str()))
            .collect(),
        edges: graph
            .edges
            .iter()
            .map(|e| EdgeJson {
                from: e.from,
                to: e.to,
                kind: e.kind.to_string(),
                chained: e.chained,
            })
            .collect(),
    }
}

/// The counters of one vertex, summed over its subtasks, at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VertexSample {
    /// The vertex.
    pub vertex: usize,
    /// Records received.
    pub records_in: u64,
    /// Records emitted.
    pub records_out: u64,
    /// Time blocked on full output channels, ms.
    pub backpressure_ms: u64,
    /// Subtasks (for the backpressure share).
    pub subtasks: usize,
    /// The lowest watermark.
    pub watermark_ms: Option<i64>,
}

/// Rates computed from two consecutive samples.
#[derive(Debug, Default)]
pub struct Rates {
    last: Option<(Instant, Vec<VertexSample>)>,
    current: HashMap<usize, (VertexSample, Option<f64>, Option<f64>)>,
}

impl Rates {
    /// Records a sample taken now.
    pub fn sample(&mut self, samples: Vec<VertexSample>) {
        self.sample_at(Instant::now(), samples);
    }

    /// Records a sample taken at `now`: records/s and backpressure share are the
    /// differences to the previous sample over the time between them.
    pub fn sample_at(&mut self, now: Instant, samples: Vec<VertexSample>) {
        let previous = self.last.take();
        self.current.clear();
        for sample in &samples {
            let before = previous.as_ref().and_then(|(at, list)| {
                let seconds = now.duration_since(*at).as_secs_f64();
                let old = list.iter().find(|s| s.vertex == sample.vertex)?;
                (seconds > 0.0).then_some((seconds, old))
            });
            let (rate, backpressure) = match before {
                Some((seconds, old)) => {
                    // Sinks emit nothing: their rate is what they receive.
                    let (now_count, old_count) = if sample.records_out == 0 {
                        (sample.records_in, old.records_in)
                    } else {
                        (sample.records_out, old.records_out)
                    };
                    let rate = now_count.saturating_sub(old_count) as f64 / seconds;
                    let blocked_ms = sample.backpressure_ms.saturating_sub(old.backpressure_ms);
                    let share = blocked_ms as f64 / (seconds * 1e3 * sample.subtasks.max(1) as f64);
                    (Some(rate), Some(share.clamp(0.0, 1.0)))
                }
                None => (None, None),
            };
            self.current
                .insert(sample.vertex, (sample.clone(), rate, backpressure));
        }
        self.last = Some((now, samples));
    }

    /// Writes the latest figures into `graph`'s vertices.
    pub fn apply(&self, graph: &mut GraphJson) {
        let now_ms = super::job::now_ms() as i64;
        for vertex in &mut graph.vertices {
            if let Some((sample, rate, backpressure)) = self.current.get(&vertex.id) {
                vertex.records_in = Some(sample.records_in);
                vertex.records_out = Some(sample.records_out);
                vertex.records_per_second = *rate;
                vertex.backpressure_ms = Some(sample.backpressure_ms);
                vertex.backpressure = *backpressure;
                vertex.watermark_ms = sample.watermark_ms;
                vertex.watermark_lag_ms = sample.watermark_ms.map(|w| now_ms.saturating_sub(w));
            }
        }
    }
}

/// The API's name of a recorded end.
pub fn state_name(state: RecordedState) -> &'static str {
    match state {
        RecordedState::Running => "running",
        RecordedState::Finished => "finished",
        RecordedState::Cancelled => "cancelled",
        RecordedState::Suspended => "suspended",
        RecordedState::Failed => "failed",
    }
}

/// One completed checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CheckpointJson {
    /// Its id.
    pub id: u64,
    /// Whether it was a savepoint.
    pub savepoint: bool,
    /// From barrier injection to metadata written, ms.
    pub duration_ms: f64,
    /// Bytes uploaded.
    pub bytes: u64,
    /// Bytes of state it refers to.
    pub state_bytes: u64,
}

impl From<&CheckpointStats> for CheckpointJson {
    fn from(stats: &CheckpointStats) -> Self {
        Self {
            id: stats.checkpoint.get(),
            savepoint: stats.savepoint,
            duration_ms: stats.duration_ms,
            bytes: stats.bytes,
            state_bytes: stats.state_bytes,
        }
    }
}

/// Minimum, mean and maximum of a figure.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Spread {
    /// Smallest.
    pub min: f64,
    /// Mean.
    pub mean: f64,
    /// Largest.
    pub max: f64,
}

impl Spread {
    /// The spread of `values` (`None` when empty).
    pub fn of(values: impl Iterator<Item = f64>) -> Option<Self> {
        let values: Vec<f64> = values.collect();
        if values.is_empty() {
            return None;
        }
        Some(Self {
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            mean: values.iter().sum::<f64>() / values.len() as f64,
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn plan_graph_draws_key_by_as_a_hash_edge() {
        let text = "
name: g
parallelism: 2
sources: [{name: n, kind: sequence, from: 1, to: 10, timestamp: value}]
operators:
  - {name: k, kind: key_by, input: n, key: value}
  - {name: w, kind: window, input: k, window: {type: tumbling, size: 1s}, aggregates: {c: count}}
  - {name: m, kind: map, input: w, parallelism: 1, fields: {c: c}}
sinks: [{name: out, kind: blackhole, input: m}]
";
        let plan = weir_jobfile::load("g.yaml", text, &weir_jobfile::Registry::default()).unwrap();
        let graph = plan_graph(&plan, None);
        let names: Vec<(&str, &str, usize)> = graph
            .vertices
            .iter()
            .map(|v| (v.name.as_str(), v.role, v.parallelism))
            .collect();
        assert_eq!(
            names,
            [
                ("n", "source", 2),
                ("w", "operator", 2),
                ("m", "operator", 1),
                ("out", "sink", 2)
            ]
        );
        let edges: Vec<(usize, usize, &str)> = graph
            .edges
            .iter()
            .map(|e| (e.from, e.to, e.kind.as_str()))
            .collect();
        assert_eq!(
            edges,
            [(0, 1, "hash"), (1, 2, "rebalance"), (2, 3, "rebalance")]
        );
    }

    #[test]
    fn rates_are_differences_over_the_interval() {
        let mut rates = Rates::default();
        let start = Instant::now();
        let sample = |out, blocked| VertexSample {
            vertex: 0,
            records_in: 0,
            records_out: out,
            backpressure_ms: blocked,
            subtasks: 2,
            watermark_ms: Some(5),
        };
        rates.sample_at(start, vec![sample(100, 0)]);
        rates.sample_at(start + Duration::from_secs(2), vec![sample(1100, 1000)]);
        let mut graph = GraphJson {
            vertices: vec![vertex(0, "v", None, 2, "source")],
            edges: vec![],
        };
        rates.apply(&mut graph);
        let v = &graph.vertices[0];
        assert_eq!(v.records_per_second, Some(500.0));
        assert_eq!(v.backpressure, Some(0.25));
        assert_eq!(v.records_out, Some(1100));
        assert_eq!(v.watermark_ms, Some(5));
    }
}
