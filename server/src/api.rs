//! The REST API: routes, authentication and handlers. Every response is JSON;
//! errors are `{"error": "...", "problems": [...]}` with a status a client can act
//! on (400 bad body, 401 missing token, 404 unknown job, 409 job not running).

use super::job::{now_ms, JobError, ServerJob};
use super::registry::{JobRecord, RecordedState, SubmitOptions};
use super::view::{CheckpointJson, GraphJson, Spread};
use super::{ui, AppState, Role};
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use weir_checkpoint::{CheckpointStorage, StorageConfig};
use weir_dataflow::checkpointing::ResumeFrom;

/// How long `DELETE /jobs/{id}` and `POST /jobs/{id}/stop` wait for the job to end.
const END_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/jobs", get(list_jobs).post(submit))
        .route("/jobs/{id}", get(job_detail).delete(cancel))
        .route("/jobs/{id}/checkpoints", get(checkpoints))
        .route("/jobs/{id}/savepoints", post(savepoint))
        .route("/jobs/{id}/stop", post(stop))
        .route("/jobs/{id}/state/{uid}/{state}", get(query_state))
        .route("/metrics", get(metrics))
        .route("/cluster", get(cluster_view))
        .layer(middleware::from_fn_with_state(state.clone(), require_token));
    let control = state.cluster.as_ref().map(|c| c.routes());
    let router = Router::new()
        .route("/", get(ui::index))
        .route("/app.js", get(ui::script))
        .route("/openapi.json", get(super::openapi::document))
        .merge(api);
    let router = match control {
        Some(control) => router.merge(control),
        None => router,
    };
    let gated = router.layer(middleware::from_fn_with_state(state.clone(), standby_gate));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/ready", get(ready))
        .merge(gated)
        .fallback(no_route)
        .with_state(state)
}

/// The body of `/healthz` and `/ready`: the role, and where the active
/// coordinator is when this one waits.
fn role_json(role: &Role) -> serde_json::Value {
    match role {
        Role::Active { epoch } => json!({ "role": "active", "epoch": epoch }),
        Role::Standby { active } => json!({ "role": "standby", "active": active }),
    }
}

/// `GET /healthz`: the process serves (liveness), whatever its role.
async fn healthz(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(role_json(&state.role()))
}

/// `GET /ready`: 200 when this server acts, 503 while it waits for the lease
/// (readiness: a Service sends traffic to the active coordinator only).
async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let role = state.role();
    let status = match role {
        Role::Active { .. } => StatusCode::OK,
        Role::Standby { .. } => StatusCode::SERVICE_UNAVAILABLE,
    };
    (status, Json(role_json(&role))).into_response()
}

/// Answers every request but health and readiness with 503 while this coordinator
/// waits for the lease, naming the active one (`active`), which workers follow.
async fn standby_gate(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    match state.role() {
        Role::Active { .. } => next.run(request).await,
        Role::Standby { active } => {
            let message = match &active {
                Some(active) => {
                    format!("this coordinator is a standby: the active one is at {active}")
                }
                None => "this coordinator is a standby, waiting for the lease".to_string(),
            };
            let body = json!({ "error": message, "active": active });
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

/// `GET /cluster`: the registered workers (cluster mode), by id.
async fn cluster_view(
    State(state): State<Arc<AppState>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let cluster = state.cluster.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "this server runs jobs itself: it is not a coordinator (start `weir coordinator`)",
        )
    })?;
    Ok(Json(json!({ "workers": cluster.describe() })))
}

/// The registry of user-defined functions job files may use.
pub(crate) fn registry() -> weir_jobfile::Registry {
    weir_jobfile::Registry::default()
}

/// An error answer.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
    problems: Vec<String>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            problems: Vec::new(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message });
        if !self.problems.is_empty() {
            body["problems"] = json!(self.problems);
        }
        (self.status, Json(body)).into_response()
    }
}

impl From<JobError> for ApiError {
    fn from(e: JobError) -> Self {
        let status = match e {
            JobError::NotRunning { .. } => StatusCode::CONFLICT,
            JobError::Engine { .. } | JobError::Registry { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        Self::new(status, e.to_string())
    }
}

fn join_error(e: tokio::task::JoinError) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("the request's worker failed: {e}"),
    )
}

/// Runs blocking job work on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(join_error)?
}

async fn no_route(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no route {} {}: see /openapi.json for the API",
            request.method(),
            request.uri().path()
        ),
    )
}

/// Compares without stopping at the first difference.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

async fn require_token(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(token) = &state.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| same_secret(g.trim().as_bytes(), token.as_bytes())) {
            let mut response = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this server requires an access token: expected the header `Authorization: Bearer <token>` (weir: --token or WEIR_TOKEN)",
            )
            .into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return response;
        }
    }
    next.run(request).await
}

fn job_of(state: &AppState, id: &str) -> Result<Arc<ServerJob>, ApiError> {
    state.job(id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no job `{id}`: GET /jobs lists the jobs"),
        )
    })
}

/// A job in lists.
#[derive(Serialize)]
pub(crate) struct JobSummary {
    id: String,
    name: String,
    status: String,
    restarts: u32,
    server_restarts: u32,
    submitted_at_ms: u64,
    ended_at_ms: Option<u64>,
    error: Option<String>,
}

fn summary(job: &ServerJob) -> JobSummary {
    let record = job.record();
    JobSummary {
        id: record.id,
        name: record.name,
        status: job.status(),
        restarts: job.restarts(),
        server_restarts: record.server_restarts,
        submitted_at_ms: record.submitted_at_ms,
        ended_at_ms: record.ended_at_ms,
        error: record.error,
    }
}

async fn list_jobs(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let jobs: Vec<JobSummary> = state.all().iter().map(|j| summary(j)).collect();
    Json(json!({ "jobs": jobs }))
}

/// The body of `POST /jobs`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Submission {
    /// The job file's text (YAML or JSON).
    job: String,
    /// The file name, for messages and the default job name.
    #[serde(default)]
    file: Option<String>,
    #[serde(default)]
    parallelism: Option<usize>,
    #[serde(default)]
    from_savepoint: Option<String>,
    #[serde(default)]
    allow_non_restored_state: bool,
}

/// The checked plan of a submitted job: SQL statements (a `.sql` file) or a job
/// file; else every problem, with its line and column.
pub(crate) fn load_job(file: &str, text: &str) -> Result<weir_jobfile::JobPlan, Vec<String>> {
    if weir_sql::is_sql_file(file) {
        return weir_sql::load(file, text, &registry());
    }
    weir_jobfile::load(file, text, &registry())
        .map_err(|e| e.problems().iter().map(|p| p.to_string()).collect())
}

/// Whether the job file text sets `checkpoints.storage` itself.
fn sets_checkpoint_storage(text: &str) -> bool {
    use weir_jobfile::yaml::{parse, NodeKind};
    let Ok(root) = parse(text) else {
        return false;
    };
    let entry = |node: &weir_jobfile::yaml::Node, key: &str| match &node.kind {
        NodeKind::Map(entries) => entries
            .iter()
            .find(|(k, _)| k.text == key)
            .map(|(_, v)| v.clone()),
        _ => None,
    };
    entry(&root, "checkpoints").is_some_and(|c| entry(&c, "storage").is_some())
}

/// A new job id: the job's name (letters, digits, `-`, `_`) and a unique suffix.
fn new_id(name: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!(
        "{}-{:08x}",
        if clean.is_empty() { "job" } else { &clean },
        hasher.finish() as u32
    )
}

async fn submit(
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<(StatusCode, Json<JobSummary>), ApiError> {
    let submission: Submission = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "the request body is not a job submission ({e}): expected a JSON object {{\"job\": \"<job file text, YAML or JSON, or SQL statements>\", \"file\"?: \"name.yaml or name.sql\", \"parallelism\"?: n, \"from_savepoint\"?: \"path\", \"allow_non_restored_state\"?: bool}}"
        ))
    })?;
    let file = submission.file.clone().unwrap_or_else(|| "job.yaml".into());
    let mut problems = Vec::new();
    if submission.parallelism == Some(0) {
        problems.push("parallelism: expected at least 1, found 0".to_string());
    }
    let plan = match load_job(&file, &submission.job) {
        Ok(plan) => Some(plan),
        Err(found) => {
            problems.extend(found);
            None
        }
    };
    if let Some(savepoint) = &submission.from_savepoint {
        if let Err(e) =
            CheckpointStorage::read_savepoint(&StorageConfig::new(savepoint.clone())).await
        {
            problems.push(format!("from_savepoint: {e}"));
        }
    }
    let plan = match plan {
        Some(plan) if problems.is_empty() => plan,
        _ => {
            let mut error = ApiError::bad_request(format!(
                "{file}: {} problem(s); nothing was created",
                problems.len()
            ));
            error.problems = problems;
            return Err(error);
        }
    };
    let id = new_id(&plan.spec.name);
    let sets_storage = if weir_sql::is_sql_file(&file) {
        plan.spec.checkpoints.storage != weir_jobfile::CheckpointSpec::default().storage
    } else {
        sets_checkpoint_storage(&submission.job)
    };
    let checkpoint_storage = if sets_storage {
        plan.spec.checkpoints.storage.clone()
    } else {
        state.registry.job_location(&id, "checkpoints")
    };
    if let Some(other) = state.all().into_iter().find(|other| {
        let record = other.record();
        record.state == RecordedState::Running
            && record.name == plan.spec.name
            && record.checkpoint_storage == checkpoint_storage
    }) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "job `{}` is already running with checkpoint storage {checkpoint_storage} (as {}): two jobs of one name cannot share a checkpoint storage; give this one another name or checkpoints.storage",
                plan.spec.name, other.id
            ),
        ));
    }
    let record = JobRecord {
        id: id.clone(),
        name: plan.spec.name.clone(),
        file,
        text: submission.job,
        options: SubmitOptions {
            parallelism: submission.parallelism,
            from_savepoint: submission.from_savepoint.clone(),
            allow_non_restored_state: submission.allow_non_restored_state,
        },
        checkpoint_storage,
        savepoint_storage: state.registry.job_location(&id, "savepoints"),
        state: RecordedState::Running,
        error: None,
        savepoints: Vec::new(),
        submitted_at_ms: now_ms(),
        ended_at_ms: None,
        server_restarts: 0,
        resume_from: None,
    };
    let state2 = state.clone();
    let job = blocking(move || {
        let registry = &state2.registry;
        registry.save(&record).map_err(|e| {
            let _ = registry.remove(&record.id);
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("could not write the job's record: {e}"),
            )
        })?;
        let job = ServerJob::new(record, Some(plan), registry.clone(), state2.cluster.clone());
        if let Err(e) = job.start(ResumeFrom::choose(submission.from_savepoint, false)) {
            let _ = registry.remove(&job.id);
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("{e}; nothing was created"),
            ));
        }
        state2
            .jobs
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(job.id.clone(), job.clone());
        Ok(job)
    })
    .await?;
    tracing::info!("job `{}` submitted", job.id);
    Ok((StatusCode::CREATED, Json(summary(&job))))
}

/// `GET /jobs/{id}`.
#[derive(Serialize)]
struct JobDetail {
    #[serde(flatten)]
    summary: JobSummary,
    file: String,
    /// The job as submitted: the job file's text or the SQL statements.
    text: String,
    options: SubmitOptions,
    checkpoint_storage: String,
    savepoint_storage: String,
    graph: GraphJson,
    latest_checkpoint: Option<CheckpointJson>,
    savepoints: Vec<super::registry::SavepointRecord>,
}

async fn job_detail(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<JobDetail>, ApiError> {
    let job = job_of(&state, &id)?;
    blocking(move || {
        let record = job.record();
        Ok(Json(JobDetail {
            summary: summary(&job),
            file: record.file,
            text: record.text,
            options: record.options,
            checkpoint_storage: record.checkpoint_storage,
            savepoint_storage: record.savepoint_storage,
            graph: job.graph(),
            latest_checkpoint: job.checkpoints().last().map(CheckpointJson::from),
            savepoints: record.savepoints,
        }))
    })
    .await
}

async fn checkpoints(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let job = job_of(&state, &id)?;
    blocking(move || {
        let history: Vec<CheckpointJson> =
            job.checkpoints().iter().map(CheckpointJson::from).collect();
        let savepoints = job.record().savepoints;
        Ok(Json(json!({
            "id": job.id,
            "counts": {
                "completed": history.len(),
                "failed": job.failed_checkpoints(),
                "savepoints": savepoints.len(),
            },
            "latest": history.last(),
            "duration_ms": Spread::of(history.iter().map(|c| c.duration_ms)),
            "bytes": Spread::of(history.iter().map(|c| c.bytes as f64)),
            "history": history,
            "savepoints": savepoints,
        })))
    })
    .await
}

async fn savepoint(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let job = job_of(&state, &id)?;
    blocking(move || {
        let location = job.savepoint(false)?;
        Ok(Json(json!({ "id": job.id, "location": location })))
    })
    .await
}

async fn stop(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let job = job_of(&state, &id)?;
    blocking(move || {
        let location = job.savepoint(true)?;
        job.wait_ended(END_TIMEOUT);
        Ok(Json(
            json!({ "id": job.id, "location": location, "status": job.status() }),
        ))
    })
    .await
}

async fn cancel(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let job = job_of(&state, &id)?;
    blocking(move || {
        job.cancel(END_TIMEOUT)?;
        Ok(Json(json!({ "id": job.id, "status": job.status() })))
    })
    .await
}

/// How long a state query may wait for its position bound, unless it says.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// The parameters of `GET /jobs/{id}/state/{uid}/{state}`.
#[derive(Deserialize)]
struct StateParams {
    /// A lookup: the key as JSON in the state's key form; without it, a scan.
    key: Option<String>,
    /// A scan's page size (default 100, at most 10 000).
    limit: Option<usize>,
    /// A scan's cursor: the `next` of the previous page.
    cursor: Option<String>,
    /// Answer once the serving subtasks know this checkpoint complete.
    at_least_checkpoint: Option<u64>,
    /// How long to wait for that, in ms (default 5000).
    timeout_ms: Option<u64>,
}

/// `GET /jobs/{id}/state/{uid}/{state}`: a live lookup (`?key=`) or a page of a
/// scan (`?limit=&cursor=`) of a keyed state of a running job, with the position of
/// each subtask that answered.
async fn query_state(
    State(state): State<Arc<AppState>>,
    Path((id, uid, name)): Path<(String, String, String)>,
    Query(params): Query<StateParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    use weir_dataflow::query::{QueryError, QueryPort, StateRequest};
    let job = job_of(&state, &id)?;
    let key = params
        .key
        .map(|text| {
            serde_json::from_str::<serde_json::Value>(&text).map_err(|e| {
                ApiError::bad_request(format!(
                    "the key `{text}` is not JSON ({e}): give it in the state's key form, \
                     e.g. key=42, key=\"alice\" or key=[1,\"a\"]"
                ))
            })
        })
        .transpose()?;
    let limit = params.limit.unwrap_or(100);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit {limit}: expected 1 to 10000 entries per page"
        )));
    }
    // A job file's window state reads in its own terms.
    let view = job
        .plan()
        .and_then(|plan| weir_jobfile::state_view::StateView::of(&plan, &uid, &name));
    let key = match (key, &view) {
        (Some(key), Some(view)) => Some(view.key_in(&key).map_err(|reason| {
            ApiError::bad_request(format!("the key {key} is not a key of `{uid}`: {reason}"))
        })?),
        (key, _) => key,
    };
    let request = StateRequest {
        uid,
        state: name,
        key,
        limit,
        cursor: params.cursor,
        at_least_checkpoint: params.at_least_checkpoint,
    };
    let timeout = params
        .timeout_ms
        .map_or(QUERY_TIMEOUT, Duration::from_millis);
    blocking(move || {
        let port = || {
            job.live()
                .ok_or_else(|| QueryError::NotRunning(format!("job `{}` has not started", job.id)))?
                .query_port()
        };
        let answer = QueryPort::answer(port, &request, timeout).map_err(|e| {
            let status = match e {
                QueryError::NoOperator { .. } | QueryError::NoState { .. } => StatusCode::NOT_FOUND,
                QueryError::BadKey { .. }
                | QueryError::BadRequest(_)
                | QueryError::NotQueryable(_) => StatusCode::BAD_REQUEST,
                QueryError::NotRunning(_) | QueryError::Ended(_) => StatusCode::CONFLICT,
                QueryError::Timeout { .. } | QueryError::PositionNotReached { .. } => {
                    StatusCode::GATEWAY_TIMEOUT
                }
                QueryError::Failed { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            };
            ApiError::new(status, e.to_string())
        })?;
        let entries: Vec<serde_json::Value> = answer
            .entries
            .iter()
            .map(|entry| match &view {
                Some(view) => json!({
                    "key": view.key_out(&entry.key),
                    "value": view.value_out(&entry.value),
                }),
                None => json!({ "key": entry.key, "value": entry.value }),
            })
            .collect();
        Ok(Json(json!({
            "job": job.id,
            "uid": request.uid,
            "state": request.state,
            "entries": entries,
            "next": answer.next,
            "positions": answer.positions,
        })))
    })
    .await
}

/// `GET /metrics`: every job's live figures in the Prometheus text format.
async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let live: Vec<(String, weir_dataflow::checkpointing::LiveJob)> = state
        .all()
        .iter()
        .filter_map(|job| job.live().map(|live| (job.id.clone(), live)))
        .collect();
    let jobs: Vec<(&str, &weir_dataflow::checkpointing::LiveJob)> =
        live.iter().map(|(id, live)| (id.as_str(), live)).collect();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(&jobs),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_is_detected_only_when_the_file_sets_it() {
        assert!(sets_checkpoint_storage("checkpoints: {storage: /x}\n"));
        assert!(!sets_checkpoint_storage("checkpoints: {interval: 1s}\n"));
        assert!(!sets_checkpoint_storage("name: a\n"));
        assert!(!sets_checkpoint_storage("{"));
    }

    #[test]
    fn ids_are_safe_directory_names() {
        let id = new_id("a/b c..");
        assert!(id.starts_with("a-b-c---"), "{id}");
        assert!(id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_ne!(new_id("x"), new_id("x"));
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abd", b"abc"));
        assert!(!same_secret(b"ab", b"abc"));
    }
}
