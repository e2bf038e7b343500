//! The web UI: one HTML page and one script, embedded in the binary, that poll the
//! REST API every second (no build step, no external assets).

use axum::http::header;
use axum::response::{Html, IntoResponse};

pub(crate) async fn index() -> Html<&'static str> {
    Html(include_str!("ui/index.html"))
}

pub(crate) async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("ui/app.js"),
    )
}
