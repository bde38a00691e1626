//! Binding, admission and clean-up of passive listeners, on real sockets in a
//! temporary directory.

use super::*;
use std::io::Read;

fn unix_addr(dir: &tempfile::TempDir) -> (PathBuf, ListenAddr) {
    let path = dir.path().join("of.sock");
    (path.clone(), ListenAddr::Unix(path))
}

#[test]
fn a_unix_listener_is_0600_replaces_a_stale_socket_and_is_removed_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let (path, addr) = unix_addr(&dir);
    // A socket file nobody listens on, as a crashed scd leaves it.
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());

    let channel = ChannelCounters::default();
    let (listener, file) = Listener::bind(&addr, 4, &channel, None).unwrap();
    let meta = fs::symlink_metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(listener.addr(), &addr);
    let registered = channel.listeners.lock().unwrap();
    assert_eq!(registered.len(), 1);
    assert_eq!(registered[0].listener, format!("punix:{}", path.display()));
    drop(registered);

    let client = UnixStream::connect(&path).unwrap();
    let (stream, peer) = listener.accept().unwrap();
    assert!(matches!(stream, OfStream::Unix(_)));
    assert_eq!(peer, addr.to_string());
    drop((client, stream));

    drop(file);
    assert!(!path.exists(), "the socket file outlived its listener");
}

#[test]
fn a_live_socket_or_another_file_is_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let (path, addr) = unix_addr(&dir);
    let channel = ChannelCounters::default();
    let (_first, _file) = Listener::bind(&addr, 4, &channel, None).unwrap();
    let e = Listener::bind(&addr, 4, &channel, None).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e}");
    assert!(path.exists());

    let plain = dir.path().join("notes.txt");
    fs::write(&plain, "keep me").unwrap();
    let e = Listener::bind(&ListenAddr::Unix(plain.clone()), 4, &channel, None).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{e}");
    assert_eq!(fs::read_to_string(&plain).unwrap(), "keep me");
}

#[test]
fn a_socket_file_replaced_by_someone_else_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (path, addr) = unix_addr(&dir);
    let channel = ChannelCounters::default();
    let (listener, file) = Listener::bind(&addr, 4, &channel, None).unwrap();
    drop(listener);
    // Another process binds its own socket and moves it over the path.
    let beside = dir.path().join("other.sock");
    let _other = UnixListener::bind(&beside).unwrap();
    fs::rename(&beside, &path).unwrap();
    drop(file);
    assert!(path.exists(), "removed another process's socket");
    UnixStream::connect(&path).unwrap();
}

#[test]
fn connections_over_the_cap_are_refused_and_counted_until_one_leaves() {
    let channel = ChannelCounters::default();
    let addr = ListenAddr::Tcp("127.0.0.1:0".parse().unwrap());
    let (listener, file) = Listener::bind(&addr, 2, &channel, None).unwrap();
    assert!(file.is_none());
    let ListenAddr::Tcp(bound) = listener.addr() else {
        panic!("{:?}", listener.addr());
    };
    assert_ne!(bound.port(), 0);

    let first = listener.admit().unwrap();
    let second = listener.admit().unwrap();
    assert!(listener.admit().is_none());
    assert!(listener.admit().is_none());
    let c = listener.counters();
    assert_eq!((c.open.load(Relaxed), c.refused.load(Relaxed)), (2, 2));
    drop(first);
    let third = listener.admit().unwrap();
    assert_eq!((c.open.load(Relaxed), c.refused.load(Relaxed)), (2, 2));
    drop((second, third));
    assert_eq!(c.open.load(Relaxed), 0);

    // And accept hands over TCP streams, with the peer's address.
    let mut client = std::net::TcpStream::connect(bound).unwrap();
    let (stream, peer) = listener.accept().unwrap();
    assert_eq!(peer, client.local_addr().unwrap().to_string());
    drop(stream);
    let mut buf = [0u8; 1];
    assert_eq!(client.read(&mut buf).unwrap(), 0);
}
