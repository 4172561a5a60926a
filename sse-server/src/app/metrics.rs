//! `--metrics-listen`: `GET /metrics` on an address of its own (say a private interface), so that the
//! public listener need not expose the hub's counters.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use sse_server::{Body, Hub, HubService, Server};
use tokio::net::TcpListener;
use tower::Service;

/// Serves `/metrics` of `service` (which must still answer it) on `listener` until the process ends;
/// every other path gets 404.
pub(crate) fn spawn(hub: Hub, service: HubService, listener: TcpListener) {
    tokio::spawn(async move {
        // Never calls the hub's shutdown: the main listener's server does that; this task simply
        // ends with the process.
        let served = Server::new(hub)
            .serve(listener, MetricsOnly(service), std::future::pending())
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "the metrics listener stopped");
        }
    });
}

/// `GET /metrics` of the hub, and 404 for everything else.
#[derive(Debug, Clone)]
struct MetricsOnly(HubService);

impl Service<Request<Incoming>> for MetricsOnly {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        if req.uri().path() == "/metrics" {
            return self.0.call(req);
        }
        Box::pin(async {
            let mut resp = Response::new(Body::full(
                r#"{"error":"this address serves only GET /metrics"}"#,
            ));
            *resp.status_mut() = StatusCode::NOT_FOUND;
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            Ok(resp)
        })
    }
}
