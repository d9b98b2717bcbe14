//! Which web pages may talk to the server. Browsers let any page open a websocket to loopback and
//! send simple requests there, so without this any site could drive `predict` and `loadModel`.
//! A request that carries an `Origin` must come from a loopback page or one listed with
//! `--cors-origin`; only listed origins get CORS headers (never a reflected unlisted one). While
//! the server listens on loopback only, the `Host` must be a loopback name too, which defeats DNS
//! rebinding (a hostile name that resolves to 127.0.0.1).

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

/// Whether `host` (`name[:port]`, `[v6]:port`) names this machine's loopback interface.
pub(crate) fn is_loopback_host(host: &str) -> bool {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return ip.is_loopback(); // a bare address, `::1` included
    }
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':')
            .map_or(host, |(name, port)| if port.bytes().all(|b| b.is_ascii_digit()) { name } else { host })
    };
    let name = name.trim_end_matches('.');
    if name.eq_ignore_ascii_case("localhost") || name.to_ascii_lowercase().ends_with(".localhost") {
        return true;
    }
    name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The `host[:port]` of an origin (`http://localhost:3000`), if it is an http(s) origin.
fn origin_host(origin: &str) -> Option<&str> {
    let rest = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://"))?;
    Some(rest.split('/').next().unwrap_or(rest))
}

/// What to do with a request, from its `Origin` and `Host`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Serve it; `true` when the origin is listed and gets CORS headers.
    Serve(bool),
    /// Refuse it, saying why.
    Refuse(&'static str),
}

pub(crate) fn verdict(origin: Option<&str>, host: Option<&str>, listed: &[String], loopback_bound: bool) -> Verdict {
    if loopback_bound && host.is_some_and(|h| !is_loopback_host(h)) {
        return Verdict::Refuse("the Host header does not name this machine");
    }
    match origin {
        None => Verdict::Serve(false),
        Some(o) if listed.iter().any(|l| l == o) => Verdict::Serve(true),
        Some(o) if origin_host(o).is_some_and(is_loopback_host) => Verdict::Serve(false),
        Some(_) => Verdict::Refuse("requests from this web page's origin are not allowed (see --cors-origin)"),
    }
}

/// The request's `Origin` and `Host` headers, as text. (A function of its own: a borrow of the
/// request, whose body is not `Sync`, must not live across the middleware's `await`.)
fn origin_and_host(request: &Request) -> (Option<String>, Option<String>) {
    let text = |name| request.headers().get(name).and_then(|v: &HeaderValue| v.to_str().ok()).map(str::to_owned);
    (text(header::ORIGIN), text(header::HOST))
}

/// The middleware: refuses what [`verdict`] refuses, answers CORS preflights of listed origins and
/// adds CORS headers to their responses.
pub(crate) async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (origin, host) = origin_and_host(&request);
    let listed = match verdict(origin.as_deref(), host.as_deref(), state.cors_origins(), state.loopback_bound()) {
        Verdict::Refuse(why) => return ApiError::new(StatusCode::FORBIDDEN, why).into_response(),
        Verdict::Serve(listed) => listed,
    };
    let preflight = listed && request.method() == Method::OPTIONS;
    let mut response = if preflight { StatusCode::NO_CONTENT.into_response() } else { next.run(request).await };
    if let Some(origin) = origin.filter(|_| listed).and_then(|o| HeaderValue::from_str(&o).ok()) {
        let h = response.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
        if preflight {
            h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, OPTIONS"));
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("authorization, content-type"));
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "localhost:1234",
            "LOCALHOST.",
            "app.localhost:80",
            "127.0.0.1:1234",
            "127.8.9.1",
            "[::1]:1234",
            "::1",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in ["evil.example", "evil.example:1234", "localhost.evil.example", "10.0.0.1:1234", "[::2]:1", "0.0.0.0"]
        {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn verdicts() {
        let listed = vec!["https://app.example".to_owned()];
        let v = |origin, host, bound| verdict(origin, host, &listed, bound);
        assert_eq!(v(None, Some("localhost:1234"), true), Verdict::Serve(false));
        assert_eq!(v(None, None, true), Verdict::Serve(false));
        assert_eq!(v(Some("http://localhost:3000"), Some("127.0.0.1:1234"), true), Verdict::Serve(false));
        assert_eq!(v(Some("https://app.example"), Some("localhost:1234"), true), Verdict::Serve(true));
        assert!(matches!(v(Some("https://evil.example"), Some("localhost:1234"), true), Verdict::Refuse(_)));
        assert!(matches!(v(Some("null"), Some("localhost:1234"), true), Verdict::Refuse(_)));
        // DNS rebinding: a hostile name for 127.0.0.1.
        assert!(matches!(v(None, Some("evil.example:1234"), true), Verdict::Refuse(_)));
        // Listening on the network by choice: any Host, origins as before.
        assert_eq!(v(None, Some("my-box.lan:1234"), false), Verdict::Serve(false));
        assert!(matches!(v(Some("https://evil.example"), Some("my-box.lan:1234"), false), Verdict::Refuse(_)));
    }
}
