//! A stand-in server for tests of clients: it answers every request the same way
//! and reports what it was asked. Built only with the `fake` feature.
//!
//! Owns its own thread and runtime, so sync and async tests use it alike; it
//! stops when dropped. It never reads what a request means.

use crate::server::{serve, Limits};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use std::net::SocketAddr;
use tokio::sync::{mpsc, oneshot};

/// What one request asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked {
    /// The method.
    pub method: String,
    /// Path and query.
    pub target: String,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
}

/// A running fake server.
#[derive(Debug)]
pub struct Fake {
    /// Where it listens (loopback).
    pub addr: SocketAddr,
    /// One entry per request, in order.
    pub asked: mpsc::UnboundedReceiver<Asked>,
    stop: Option<oneshot::Sender<()>>,
}

impl Fake {
    /// Starts a server on a loopback port answering `status` with `body`.
    pub fn start(status: u16, body: &'static str) -> std::io::Result<Fake> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (tell, asked) = mpsc::unbounded_channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let _ = tell.send(Asked {
                method: req.method().to_string(),
                target: req.uri().to_string(),
                content_type: req
                    .headers()
                    .get(hyper::header::CONTENT_TYPE)
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
            });
            let answer = Response::builder()
                .status(status)
                .body(Full::new(Bytes::from_static(body.as_bytes())));
            async move { answer }
        });
        std::thread::Builder::new()
            .name("fake-http".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)?;
                    tokio::select! {
                        () = serve(listener, service, Limits::default()) => {}
                        _ = stopped => {}
                    }
                    Ok::<_, std::io::Error>(())
                })
            })?;
        Ok(Fake {
            addr,
            asked,
            stop: Some(stop),
        })
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
