//! The web app at `/`: chat, the raw-completion playground and the models page, three static
//! files built into the binary (nothing is fetched from elsewhere, so it works offline). The page
//! calls the same HTTP APIs as any client, with the same key and Origin rules; the files
//! themselves hold nothing secret and are served to anyone who reaches the port.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("index.html");
const SCRIPT: &str = include_str!("app.js");
const STYLE: &str = include_str!("app.css");

/// One file with its type; revalidated on every load, so that a new server's page is the one seen.
fn file(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body)
}

/// `GET /`, `/app.js`, `/app.css`.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { file("text/html; charset=utf-8", INDEX) }))
        .route("/app.js", get(|| async { file("text/javascript; charset=utf-8", SCRIPT) }))
        .route("/app.css", get(|| async { file("text/css; charset=utf-8", STYLE) }))
}
