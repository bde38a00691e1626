//! The limits of [`serve`](super::serve), tried the way a careless or hostile
//! client would: idle connections past the cap, half a request line, a huge head.

use super::*;
use crate::client;
use bytes::Bytes;
use http_body_util::Full;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SMALL: Limits = Limits {
    max_connections: 4,
    max_head_bytes: 8 << 10,
    header_timeout: Duration::from_secs(30),
    exchange_timeout: Duration::from_secs(60),
};

/// Answers every request with its own method and path.
async fn echo(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let text = format!("{} {}", req.method(), req.uri().path());
    Ok(Response::new(Full::new(Bytes::from(text))))
}

async fn start(limits: Limits) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, hyper::service::service_fn(echo), limits));
    addr
}

async fn get(addr: SocketAddr, path: &str) -> Result<client::Answer, client::ClientError> {
    client::request(addr, "GET", path, b"", Duration::from_secs(10)).await
}

/// Retries `get` until it answers: the server frees a connection's permit a
/// moment after the client has closed it.
async fn answers_within(addr: SocketAddr, within: Duration) -> client::Answer {
    let deadline = Instant::now() + within;
    loop {
        match get(addr, "/again").await {
            Ok(a) => return a,
            Err(e) if Instant::now() > deadline => panic!("no answer within {within:?}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Reads until the server closes; what it sent.
async fn until_closed(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got))
        .await
        .expect("the server closes the connection");
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn answers_one_request_per_connection() {
    let addr = start(SMALL).await;
    let a = get(addr, "/metrics").await.unwrap();
    assert_eq!((a.status, a.text().as_str()), (200, "GET /metrics"));
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let text = until_closed(&mut s).await;
    assert!(
        text.contains("GET /a") && !text.contains("GET /b"),
        "{text}"
    );
}

#[tokio::test]
async fn a_slow_client_stalls_nobody_and_is_closed_at_the_header_deadline() {
    let limits = Limits {
        header_timeout: Duration::from_millis(300),
        ..SMALL
    };
    let addr = start(limits).await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /metr").await.unwrap();
    let a = get(addr, "/metrics").await.unwrap();
    assert_eq!(a.status, 200);
    // The slow one is answered with an error or nothing, and closed.
    let text = until_closed(&mut slow).await;
    assert!(!text.contains("200 OK"), "{text}");
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let text = until_closed(&mut silent).await;
    assert!(!text.contains("200 OK"), "{text}");
}

#[tokio::test]
async fn an_oversized_head_is_refused_and_the_server_keeps_serving() {
    let addr = start(SMALL).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(1 << 20));
    // The server may close before it has read it all.
    let _ = s.write_all(long.as_bytes()).await;
    let text = until_closed(&mut s).await;
    assert!(text.is_empty() || text.starts_with("HTTP/1.1 4"), "{text}");
    let mut s = TcpStream::connect(addr).await.unwrap();
    let header = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(64 << 10)
    );
    let _ = s.write_all(header.as_bytes()).await;
    let text = until_closed(&mut s).await;
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 431"),
        "{text}"
    );
    assert_eq!(get(addr, "/").await.unwrap().status, 200);
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_and_the_server_recovers() {
    let addr = start(SMALL).await;
    let mut idle = Vec::new();
    for _ in 0..SMALL.max_connections {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    // Every permit is held: the server has taken them once it answers no more.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut extra = TcpStream::connect(addr).await.unwrap();
        let _ = extra.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        if until_closed(&mut extra).await.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the cap never applied");
    }
    drop(idle);
    assert_eq!(
        answers_within(addr, Duration::from_secs(10)).await.status,
        200
    );
}

#[tokio::test]
async fn serves_over_a_unix_socket() {
    let dir = std::env::temp_dir().join(format!("bounded-http-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("api.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    tokio::spawn(serve(listener, hyper::service::service_fn(echo), SMALL));
    let io = tokio::net::UnixStream::connect(&path).await.unwrap();
    let a = client::exchange(io, "POST", "/migrate/arrived", b"")
        .await
        .unwrap();
    assert_eq!(a.text(), "POST /migrate/arrived");
    let _ = std::fs::remove_dir_all(&dir);
}
