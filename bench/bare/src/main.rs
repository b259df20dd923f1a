//! `bare-hyper`: the yardstick of bench/run.sh. A hyper 1.x server (HTTP/1.1 and HTTP/2, one
//! tokio multi-thread runtime, as itwin-proxy) that answers each request with bytes held in a
//! `Bytes`, chosen by the request target (path and query, compared whole, so that it is asked
//! exactly what itwin-proxy is asked and hyper parses the same request), and does nothing else:
//! no parsing of the query or the token, no logging, no metrics. What itwin-proxy spends on a
//! cache hit beyond this is the cost of its own work. It allocates with mimalloc, as itwin-proxy does, so that the
//! allocator is no part of the difference.
//!
//! Usage: `bare-hyper LISTEN_ADDR TARGET=FILE...` (split at the last `=`), e.g.
//! `bare-hyper 127.0.0.1:28090 '/list?top=10=page-10.json' /large=page-1000.json`. Other
//! targets get 404.
//! Stops on SIGTERM or Ctrl-C.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

type Pages = Arc<HashMap<String, Bytes>>;

fn answer(pages: &Pages, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let target = request.uri().path_and_query().map_or("/", |t| t.as_str());
    let mut response = match pages.get(target) {
        Some(body) => Response::new(Full::new(body.clone())),
        None => {
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = StatusCode::NOT_FOUND;
            response
        }
    };
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn usage(problem: &str) -> ! {
    eprintln!("bare-hyper: {problem}\nusage: bare-hyper LISTEN_ADDR TARGET=FILE...");
    std::process::exit(2)
}

/// The same allocator as itwin-proxy's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = match args.next().map(|a| a.parse()) {
        Some(Ok(addr)) => addr,
        _ => usage("the first argument must be a listen address"),
    };
    let mut pages = HashMap::new();
    for arg in args {
        let Some((target, file)) = arg.rsplit_once('=') else {
            usage(&format!("{arg:?} is not TARGET=FILE"))
        };
        match std::fs::read(file) {
            Ok(bytes) => pages.insert(target.to_owned(), Bytes::from(bytes)),
            Err(e) => usage(&format!("{file}: {e}")),
        };
    }
    let pages: Pages = Arc::new(pages);
    let listener = match TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(e) => usage(&format!("cannot listen on {addr}: {e}")),
    };
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(e) => usage(&format!("cannot watch SIGTERM: {e}")),
    };
    eprintln!("bare-hyper: listening on {addr}");
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => continue,
            },
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        };
        let _ = stream.set_nodelay(true);
        let pages = pages.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let response = answer(&pages, &request);
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
