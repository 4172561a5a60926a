//! The URL argument of `listen` and `publish`: a URL without a scheme means `http://`.

/// `localhost:8080/events/x` → `http://localhost:8080/events/x`; a URL with a scheme (`https://…`,
/// `ftp://…`) is left as it is, so an unsupported scheme is reported rather than rewritten.
pub fn with_default_scheme(url: &str) -> String {
    let url = url.trim();
    if has_scheme(url) {
        url.to_owned()
    } else {
        format!("http://{url}")
    }
}

/// A scheme is letters, digits, `+`, `-`, `.` starting with a letter, followed by `://`. A bare
/// `host:port` is not one, though the URL standard reads `localhost:8080` as scheme `localhost`.
fn has_scheme(url: &str) -> bool {
    let Some((scheme, _)) = url.split_once("://") else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::with_default_scheme;

    #[test]
    fn a_url_without_a_scheme_means_http() {
        for (given, meant) in [
            ("localhost:8080/events/x", "http://localhost:8080/events/x"),
            ("127.0.0.1:8080/x", "http://127.0.0.1:8080/x"),
            (
                "example.com/x?next=http://y",
                "http://example.com/x?next=http://y",
            ),
            (" localhost/x ", "http://localhost/x"),
            ("http://a/x", "http://a/x"),
            ("HTTPS://a/x", "HTTPS://a/x"),
            ("ftp://a/x", "ftp://a/x"),
            ("svn+ssh://a/x", "svn+ssh://a/x"),
        ] {
            assert_eq!(with_default_scheme(given), meant, "{given}");
        }
    }
}
