use std::convert::Infallible;
use std::future::Future;
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use sse_server::{Body, HubService};
use tower::Service;

/// The hub console at `/`: channels, follows with a live log, resume, publish, a chart from `/metrics`.
/// Plain HTML, CSS and JavaScript compiled into the binary and served as one document (its style and
/// script inline), so it works offline, with no build step and no second request.
static CONSOLE_PAGE: LazyLock<String> = LazyLock::new(|| {
    include_str!("console.html")
        .replacen("/*console.css*/", include_str!("console.css"), 1)
        .replacen("/*console.js*/", include_str!("console.js"), 1)
});

/// The hub's routes, plus the console at `/` (unless `--no-demo`) and the optional static directory for
/// everything else.
#[derive(Debug, Clone)]
pub(crate) struct Site {
    hub: HubService,
    static_dir: Option<Arc<PathBuf>>,
    console: bool,
}

impl Site {
    pub(crate) fn new(hub: HubService, static_dir: Option<PathBuf>) -> Self {
        Site {
            hub,
            static_dir: static_dir.map(Arc::new),
            console: true,
        }
    }

    /// Serves the console at `/` (the default), or not (`--no-demo`).
    pub(crate) fn console(mut self, on: bool) -> Self {
        self.console = on;
        self
    }
}

impl Service<Request<Incoming>> for Site {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        if HubService::handles(req.uri().path()) {
            return self.hub.call(req);
        }
        let static_dir = self.static_dir.clone();
        let console = self.console;
        let extra = self.hub.hub().config().headers().clone();
        Box::pin(async move {
            let mut resp = page(&req, static_dir.as_deref().map(PathBuf::as_path), console).await;
            for (name, value) in &extra {
                resp.headers_mut().append(name.clone(), value.clone());
            }
            Ok(resp)
        })
    }
}

async fn page(req: &Request<Incoming>, static_dir: Option<&Path>, console: bool) -> Response<Body> {
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD are served here\n",
        );
    }
    let path = req.uri().path();
    if let Some(dir) = static_dir
        && let Some(file) = resolve(dir, path)
        && let Ok(bytes) = tokio::fs::read(&file).await
    {
        return with_type(Response::new(Body::full(bytes)), content_type(&file));
    }
    if console && (path == "/" || path == "/index.html") {
        let page: &'static str = CONSOLE_PAGE.as_str();
        let mut resp = with_type(Response::new(Body::full(page)), "text/html; charset=utf-8");
        // A new binary may ship a new console: revalidate rather than run a stale script.
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        return resp;
    }
    plain(StatusCode::NOT_FOUND, "not found\n")
}

/// Maps a URL path into `dir`, refusing anything that could leave it.
fn resolve(dir: &Path, url_path: &str) -> Option<PathBuf> {
    let decoded = percent_decode(url_path)?;
    let mut out = dir.to_path_buf();
    for part in Path::new(decoded.trim_start_matches('/')).components() {
        match part {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => return None,
        }
    }
    if decoded.ends_with('/') || out.is_dir() {
        out.push("index.html");
    }
    Some(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let text = percent_encoding::percent_decode_str(s).decode_utf8().ok()?;
    (!text.contains(['\0', '\\'])).then(|| text.into_owned())
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "ico" => "image/x-icon",
        "txt" => "text/plain; charset=utf-8",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

fn with_type(mut resp: Response<Body>, ty: &'static str) -> Response<Body> {
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ty));
    resp
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut resp = with_type(Response::new(Body::full(text)), "text/plain; charset=utf-8");
    *resp.status_mut() = status;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_is_one_document_with_its_style_and_script_inline() {
        let page = CONSOLE_PAGE.as_str();
        assert!(!page.contains("/*console.css*/") && !page.contains("/*console.js*/"));
        assert!(page.contains(r#"id="log-rows""#) && page.contains("new EventSource("));
        assert!(!page.contains("<script src") && !page.contains("<link"));
    }

    #[test]
    fn static_paths_cannot_escape_the_directory() {
        let dir = Path::new("/srv/www");
        assert_eq!(
            resolve(dir, "/a/b.css"),
            Some(PathBuf::from("/srv/www/a/b.css"))
        );
        assert_eq!(resolve(dir, "/../etc/passwd"), None);
        assert_eq!(resolve(dir, "/%2e%2e/etc/passwd"), None);
        assert_eq!(resolve(dir, "/a/%00"), None);
        assert_eq!(
            resolve(dir, "/"),
            Some(PathBuf::from("/srv/www/index.html"))
        );
    }
}
