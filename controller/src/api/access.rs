//! Who may reach the API: its Unix socket, made mode 0600 before it listens, so
//! only `scc`'s own user (and root) can connect; and, when the inventory also asks
//! for TCP, the bearer token every TCP request must carry, read from a file only
//! its owner can read. This module owns those checks; the routes are the API's.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

/// Why a listener or its token could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// A file system or socket call failed.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The token file may be read by others than its owner.
    #[error("{0}: the token file is readable by its group or others (chmod 600 it)")]
    TokenFileOpen(String),
    /// The token file holds no usable token.
    #[error("{0}: the token file must hold one token of at least 16 printable characters")]
    BadToken(String),
    /// Another process listens on the socket path, or it is not a socket.
    #[error("{0}: in use by another process, or not a socket")]
    PathTaken(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AccessError + '_ {
    move |source| AccessError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The bearer token in `path`: the file must be its owner's alone (no group or
/// other permission bits) and hold one token (surrounding whitespace ignored).
pub fn read_token(path: &Path) -> Result<String, AccessError> {
    let meta = std::fs::metadata(path).map_err(io(path))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(AccessError::TokenFileOpen(path.display().to_string()));
    }
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let token = text.trim();
    if token.len() < 16 || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AccessError::BadToken(path.display().to_string()));
    }
    Ok(token.to_string())
}

/// A Unix stream listener on `path` with mode 0600, set before it listens (until
/// then every connect is refused). The directory is made (0700) when missing; a
/// socket left by a crash, with nobody listening, is replaced.
pub fn bind_unix(path: &Path) -> Result<tokio::net::UnixListener, AccessError> {
    use socket2::{Domain, SockAddr, Socket, Type};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io(dir))?;
        }
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        let stale =
            meta.file_type().is_socket() && std::os::unix::net::UnixStream::connect(path).is_err();
        if !stale {
            return Err(AccessError::PathTaken(path.display().to_string()));
        }
        std::fs::remove_file(path).map_err(io(path))?;
    }
    let socket = Socket::new(Domain::UNIX, Type::STREAM.cloexec(), None).map_err(io(path))?;
    socket
        .bind(&SockAddr::unix(path).map_err(io(path))?)
        .map_err(io(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io(path))?;
    socket.listen(1024).map_err(io(path))?;
    socket.set_nonblocking(true).map_err(io(path))?;
    let std_listener: std::os::unix::net::UnixListener = socket.into();
    tokio::net::UnixListener::from_std(std_listener).map_err(io(path))
}

/// Compares without an early exit, so the time taken says nothing of how much of
/// a guess was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Refuses with 401 a request whose `Authorization` is not `Bearer TOKEN`.
pub async fn require_token(
    State(token): State<Arc<String>>,
    request: Request,
    next: Next,
) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given.is_some_and(|t| same(t.trim().as_bytes(), token.as_bytes())) {
        return next.run(request).await;
    }
    let body = serde_json::json!({ "error": "this API needs Authorization: Bearer <token>" });
    (
        StatusCode::UNAUTHORIZED,
        [
            (header::WWW_AUTHENTICATE, "Bearer"),
            (header::CONTENT_TYPE, "application/json"),
        ],
        format!("{body:#}\n"),
    )
        .into_response()
}
