//! `weir sql --explain`: a checked plan as text.

use weir_jobfile::{JobPlan, RankKind, Step, TopPlan};

/// One line a stream: name (its uid), step, inputs, fields; then the sinks.
pub(crate) fn explain(plan: &JobPlan) -> String {
    let mut out = format!(
        "job `{}`: parallelism {}, checkpoints every {:?} to {}, state {:?}\n",
        plan.spec.name,
        plan.spec.parallelism,
        plan.spec.checkpoints.interval,
        plan.spec.checkpoints.storage,
        plan.spec.state_backend
    );
    for stream in &plan.streams {
        let step = match &stream.step {
            Step::Source(spec, computed) => format!(
                "source {:?}{}",
                spec.kind,
                if computed.is_empty() {
                    String::new()
                } else {
                    format!(", {} computed", computed.len())
                }
            ),
            Step::Filter(_) => "filter (chained)".into(),
            Step::Map(_) => "map (chained)".into(),
            Step::KeyBy(keys) => format!(
                "key_by {} (hash exchange by key group)",
                keys.iter()
                    .map(|&k| plan_field(plan, &stream.inputs[0], k))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Step::Window(w) => format!(
                "window {:?}{}{} (keyed state)",
                w.shape,
                match &w.top {
                    Some(top) => format!(", {}", describe_top(plan, &stream.inputs[0], top)),
                    None => String::new(),
                },
                match w.pre_aggregate {
                    true => ", two-phase (a fold per key and window before the exchange)",
                    false => "",
                }
            ),
            Step::Top { top, .. } => format!(
                "{} per window (keyed state)",
                describe_top(plan, &stream.inputs[0], top)
            ),
            Step::Union => "union".into(),
            Step::Udf(_) => "udf".into(),
            Step::Join(j) => format!("join {:?} (keyed state)", j.kind),
        };
        let fields = stream
            .schema
            .fields
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let time = if stream.schema.event_time == Some(i) {
                    " (event time)"
                } else {
                    ""
                };
                format!("{} {}{time}", f.name, f.ty)
            })
            .collect::<Vec<_>>()
            .join(", ");
        let inputs = if stream.inputs.is_empty() {
            String::new()
        } else {
            format!(" <- {}", stream.inputs.join(", "))
        };
        let uid = stream
            .node
            .uid
            .as_deref()
            .unwrap_or(&stream.node.name.value);
        out.push_str(&format!(
            "  {}{inputs}: {step}\n      fields: {fields}\n      uid: {uid}\n",
            stream.node.name.value
        ));
    }
    for sink in &plan.sinks {
        out.push_str(&format!(
            "  sink {} <- {}: {:?}\n",
            sink.spec.node.name.value, sink.spec.input.value, sink.spec.kind
        ));
    }
    out
}

/// A top as `top N by f DESC, g ASC (ROW_NUMBER), partitioned by k`.
fn describe_top(plan: &JobPlan, input: &str, top: &TopPlan) -> String {
    let order: Vec<String> = top
        .order
        .iter()
        .map(|&(f, descending)| {
            let direction = if descending { "DESC" } else { "ASC" };
            format!("{} {direction}", plan_field(plan, input, f))
        })
        .collect();
    let rank = match top.rank {
        RankKind::Rank => "RANK",
        RankKind::DenseRank => "DENSE_RANK",
        RankKind::RowNumber => "ROW_NUMBER",
    };
    let mut text = format!("top {} by {} ({rank})", top.n, order.join(", "));
    if !top.partition.is_empty() {
        let partition: Vec<String> = top
            .partition
            .iter()
            .map(|&f| plan_field(plan, input, f))
            .collect();
        text.push_str(&format!(", partitioned by {}", partition.join(", ")));
    }
    text
}

fn plan_field(plan: &JobPlan, stream: &str, i: usize) -> String {
    plan.streams
        .iter()
        .find(|s| s.node.name.value == stream)
        .and_then(|s| s.schema.fields.get(i))
        .map_or_else(|| i.to_string(), |f| f.name.clone())
}
