//! The OpenAPI 3 description of the REST API, served at `/openapi.json`. It is
//! written by hand (`openapi.json` beside this file); the tests check that it
//! parses and lists exactly the routes of the API router (and `tests/server.rs` requests every
//! route it lists from a running server).

use axum::http::header;
use axum::response::IntoResponse;

/// The document's text.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

pub(crate) async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON)
}

#[cfg(test)]
mod tests {
    use super::OPENAPI_JSON;

    /// Every API route of `api::router` as (method, path).
    const API_ROUTES: &[(&str, &str)] = &[
        ("get", "/jobs"),
        ("post", "/jobs"),
        ("get", "/jobs/{id}"),
        ("delete", "/jobs/{id}"),
        ("get", "/jobs/{id}/checkpoints"),
        ("post", "/jobs/{id}/savepoints"),
        ("post", "/jobs/{id}/stop"),
        ("get", "/jobs/{id}/state/{uid}/{state}"),
        ("get", "/metrics"),
        ("get", "/cluster"),
        ("get", "/healthz"),
        ("get", "/ready"),
    ];

    #[test]
    fn the_document_lists_exactly_the_routes() {
        let document: serde_json::Value = serde_json::from_str(OPENAPI_JSON).unwrap();
        assert!(document["openapi"].as_str().unwrap().starts_with("3."));
        let mut listed: Vec<(String, String)> = Vec::new();
        for (path, item) in document["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                    listed.push((method.clone(), path.clone()));
                }
            }
        }
        listed.sort();
        let mut routes: Vec<(String, String)> = API_ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        routes.sort();
        assert_eq!(listed, routes);
        // Every $ref resolves.
        let text = OPENAPI_JSON;
        for piece in text.split("\"$ref\": \"#/components/schemas/").skip(1) {
            let name = &piece[..piece.find('"').unwrap()];
            assert!(
                document["components"]["schemas"].get(name).is_some(),
                "unresolved $ref {name}"
            );
        }
    }
}
