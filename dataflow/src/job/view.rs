//! The shape of a running job for display and metrics: [`GraphView`] with its
//! [`VertexView`]s and [`EdgeView`]s, built from the wired graph.

use super::wiring::Wiring;
use crate::graph::{GraphSpec, NodeKind};

/// The shape of a running job: its operators and the edges between them, for
/// display (`weir serve`'s graph) and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GraphView {
    /// Operators, in the order they were added; `VertexView::id` is the index.
    pub vertices: Vec<VertexView>,
    /// Data edges.
    pub edges: Vec<EdgeView>,
}

/// One operator of a [`GraphView`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VertexView {
    /// Index in [`GraphView::vertices`].
    pub id: usize,
    /// The operator's name.
    pub name: String,
    /// Its uid (explicit or derived from its position).
    pub uid: String,
    /// Its parallelism.
    pub parallelism: usize,
    /// Source, operator or sink.
    pub role: VertexRole,
    /// The task (chain of operators in one thread per subtask) it runs in.
    pub task: String,
}

/// What a vertex does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum VertexRole {
    /// Reads input.
    Source,
    /// Transforms records.
    Operator,
    /// Writes output.
    Sink,
}

impl VertexRole {
    /// `source`, `operator` or `sink`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Source => "source",
            Self::Operator => "operator",
            Self::Sink => "sink",
        }
    }
}

/// One edge of a [`GraphView`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct EdgeView {
    /// Upstream vertex id.
    pub from: usize,
    /// Downstream vertex id.
    pub to: usize,
    /// `forward`, `hash`, `rebalance` or `broadcast`.
    pub kind: &'static str,
    /// Whether both ends run in the same thread (no channel in between).
    pub chained: bool,
}

/// An [`EdgeView`] as read back (from a worker's report), its kind a name.
#[derive(serde::Deserialize)]
struct EdgeRead {
    from: usize,
    to: usize,
    kind: String,
    chained: bool,
}

impl<'de> serde::Deserialize<'de> for EdgeView {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let read = <EdgeRead as serde::Deserialize>::deserialize(deserializer)?;
        Self::try_from(read).map_err(serde::de::Error::custom)
    }
}

impl TryFrom<EdgeRead> for EdgeView {
    type Error = String;

    fn try_from(read: EdgeRead) -> Result<Self, String> {
        let kind = ["forward", "hash", "rebalance", "broadcast"]
            .into_iter()
            .find(|known| *known == read.kind)
            .ok_or_else(|| {
                format!(
                    "unknown edge kind `{}`: expected forward, hash, rebalance or broadcast",
                    read.kind
                )
            })?;
        Ok(Self {
            from: read.from,
            to: read.to,
            kind,
            chained: read.chained,
        })
    }
}

pub(super) fn graph_view(
    graph: &GraphSpec,
    parallelism: &[usize],
    wiring: &Wiring<'_>,
) -> GraphView {
    let mut task_of = vec![String::new(); graph.nodes.len()];
    let mut view = GraphView::default();
    for (id, node) in graph.nodes.iter().enumerate() {
        // The task is named after the root of the chain the node belongs to.
        let mut root = id;
        while let [edge] = graph.nodes[root].inputs.as_slice() {
            if !wiring.chained[root][0] {
                break;
            }
            root = edge.from;
        }
        if task_of[root].is_empty() {
            task_of[root] = wiring.task_name(root);
        }
        view.vertices.push(VertexView {
            id,
            name: node.name.clone(),
            uid: graph.uid_of(id),
            parallelism: parallelism[id],
            role: match node.kind {
                NodeKind::Source(_) => VertexRole::Source,
                NodeKind::Operator(_) => VertexRole::Operator,
                NodeKind::Sink(_) => VertexRole::Sink,
            },
            task: task_of[root].clone(),
        });
        for (index, edge) in node.inputs.iter().enumerate() {
            view.edges.push(EdgeView {
                from: edge.from,
                to: id,
                kind: match edge.kind {
                    crate::EdgeKind::Forward => "forward",
                    crate::EdgeKind::Hash => "hash",
                    crate::EdgeKind::Rebalance => "rebalance",
                    crate::EdgeKind::Broadcast => "broadcast",
                },
                chained: wiring.chained[id][index],
            });
        }
    }
    view
}
