//! Cross-site request forgery protection for the dashboard's actions: the
//! double-submit pattern. Every page sets (once) a random token in a cookie
//! that only this site's pages send back (`SameSite=Strict`, `HttpOnly`,
//! scoped to the dashboard's path) and writes the same token into each
//! form; an action is accepted only when the two match and its `Origin`, if
//! the browser sent one, is this host. Another site can make a browser post
//! a form here, but can neither read the token nor send the cookie along.

use axum::http::{header, HeaderMap};

/// The cookie's name.
pub(crate) const COOKIE: &str = "scheduler_csrf";

/// A new random token (128 bits).
pub(crate) fn new_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The token of the request's cookie, if it has a well-formed one.
pub(crate) fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
        .filter(|v| v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The `Set-Cookie` value for `token` under the dashboard's `base` path.
pub(crate) fn set_cookie(token: &str, base: &str) -> String {
    let path = if base.is_empty() { "/" } else { base };
    format!("{COOKIE}={token}; Path={path}; HttpOnly; SameSite=Strict")
}

/// Whether an action may go ahead: the form's token matches the cookie's,
/// and the request does not come from another origin.
pub(crate) fn allowed(headers: &HeaderMap, form_token: &str) -> bool {
    let Some(cookie) = cookie_token(headers) else {
        return false;
    };
    same_origin(headers) && constant_time_eq(cookie.as_bytes(), form_token.as_bytes())
}

/// False when `Origin` (or, without it, `Sec-Fetch-Site`) says the request
/// comes from another site; true when the browser said nothing.
fn same_origin(headers: &HeaderMap) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(origin) = header("origin") {
        let host = header("host").unwrap_or_default();
        let origin_host = origin.split_once("://").map(|(_, h)| h).unwrap_or("");
        return !host.is_empty() && origin_host == host;
    }
    !matches!(header("sec-fetch-site"), Some("cross-site" | "same-site"))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, HeaderValue::from_str(value).expect("header"));
        }
        h
    }

    #[test]
    fn an_action_needs_the_cookie_token_and_this_origin() {
        let token = new_token();
        let cookie = format!("other=1; {COOKIE}={token}");
        let ok = headers(&[
            ("cookie", &cookie),
            ("host", "app:8080"),
            ("origin", "http://app:8080"),
        ]);
        assert!(allowed(&ok, &token));
        assert!(!allowed(&ok, &new_token()), "another token");
        assert!(!allowed(&ok, ""), "no token");
        let no_cookie = headers(&[("host", "app:8080")]);
        assert!(!allowed(&no_cookie, &token));
        let elsewhere = headers(&[
            ("cookie", &cookie),
            ("host", "app:8080"),
            ("origin", "https://evil.example"),
        ]);
        assert!(!allowed(&elsewhere, &token));
        let cross = headers(&[
            ("cookie", &cookie),
            ("host", "app:8080"),
            ("sec-fetch-site", "cross-site"),
        ]);
        assert!(!allowed(&cross, &token));
        let silent = headers(&[("cookie", &cookie), ("host", "app:8080")]);
        assert!(allowed(&silent, &token));
        let forged = headers(&[("cookie", "scheduler_csrf=x\"<>")]);
        assert_eq!(cookie_token(&forged), None);
    }

    #[test]
    fn the_cookie_is_scoped_to_the_dashboard() {
        assert_eq!(
            set_cookie("t", "/admin/scheduler"),
            "scheduler_csrf=t; Path=/admin/scheduler; HttpOnly; SameSite=Strict"
        );
        assert!(set_cookie("t", "").contains("Path=/;"));
    }
}
