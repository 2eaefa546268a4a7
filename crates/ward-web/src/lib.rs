//! Ward's web app: the clinician client, patient portal and admin console, as plain HTML, CSS
//! and JavaScript modules embedded in the binary (no build step, nothing fetched at run time),
//! and the router that serves them.
//!
//! Only `/` (the app shell) and `/assets/<file>` for each embedded file are served. Everything
//! the app shows comes from Ward's public JSON API under `/api/`, which this crate does not
//! touch. Every response carries its own Content-Security-Policy (scripts and styles from this
//! origin only, no inline script, no framing) and `Cache-Control: no-store`.

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use axum::routing::get;

/// The Content-Security-Policy of every response of the web app.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; \
                       form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// One embedded file.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// File name under `/assets/`.
    pub name: &'static str,
    /// Its media type.
    pub content_type: &'static str,
    /// Its bytes.
    pub bytes: &'static [u8],
}

const INDEX: &[u8] = include_bytes!("../assets/index.html");

/// Every file under `/assets/`.
pub const ASSETS: &[Asset] = &[
    Asset { name: "app.css", content_type: "text/css; charset=utf-8", bytes: include_bytes!("../assets/app.css") },
    Asset { name: "app.js", content_type: "text/javascript; charset=utf-8", bytes: include_bytes!("../assets/app.js") },
    Asset { name: "api.js", content_type: "text/javascript; charset=utf-8", bytes: include_bytes!("../assets/api.js") },
    Asset { name: "dom.js", content_type: "text/javascript; charset=utf-8", bytes: include_bytes!("../assets/dom.js") },
    Asset { name: "webauthn.js", content_type: "text/javascript; charset=utf-8", bytes: include_bytes!("../assets/webauthn.js") },
    Asset { name: "icon.svg", content_type: "image/svg+xml", bytes: include_bytes!("../assets/icon.svg") },
];

/// The app shell and its assets. Merge it into the server's router; it needs no state. Only
/// the embedded files have routes: any other path falls through to the server's own 404.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut router = Router::new().route("/", get(|| async { respond("text/html; charset=utf-8", INDEX) }));
    for a in ASSETS {
        router = router.route(&format!("/assets/{}", a.name), get(move || async move { respond(a.content_type, a.bytes) }));
    }
    router
}

fn respond(content_type: &'static str, bytes: &'static [u8]) -> Response {
    let mut res = Response::new(Body::from(bytes));
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    // The shell holds no PHI, but nothing about the app is worth a stale copy in a shared
    // workstation's cache either.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    res
}

#[cfg(test)]
mod tests {
    use axum::body::to_bytes;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::*;

    async fn get_path(path: &str) -> Response {
        router::<()>().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap()
    }

    #[tokio::test]
    async fn shell_and_assets_carry_the_policy_and_no_store() {
        for path in ["/", "/assets/app.js", "/assets/app.css"] {
            let res = get_path(path).await;
            assert_eq!(res.status(), StatusCode::OK, "{path}");
            assert_eq!(res.headers()[header::CONTENT_SECURITY_POLICY], CSP);
            assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
            assert_eq!(res.headers()[header::X_FRAME_OPTIONS], "DENY");
        }
        assert_eq!(get_path("/assets/nope.js").await.status(), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn the_shell_has_no_inline_script_or_style() {
        let body = to_bytes(get_path("/").await.into_body(), usize::MAX).await.unwrap();
        let html = std::str::from_utf8(&body).unwrap();
        for tag in html.split("<script").skip(1) {
            let open = &tag[..tag.find('>').unwrap()];
            assert!(open.contains("src=\"/assets/"), "inline script: {open}");
            assert!(tag[tag.find('>').unwrap() + 1..].starts_with("</script>"), "script with a body");
        }
        assert!(!html.contains("<style"), "inline style");
        assert!(!html.contains(" style="), "inline style attribute");
        for (i, _) in html.match_indices(" on") {
            let rest: String = html[i + 3..].chars().take_while(|c| c.is_ascii_alphabetic()).collect();
            assert!(!html[i + 3 + rest.len()..].starts_with('='), "inline event handler on{rest}");
        }
    }

    #[test]
    fn every_asset_the_shell_names_is_served() {
        let html = std::str::from_utf8(INDEX).unwrap();
        for part in html.split("/assets/").skip(1) {
            let name = &part[..part.find('"').unwrap()];
            assert!(ASSETS.iter().any(|a| a.name == name), "{name} is not embedded");
        }
    }
}
