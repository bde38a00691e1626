//! A running channel's `punix:` listener end to end, without root: the socket
//! file's life, the connection cap, and the idle timeout against a silent client
//! and a client that answers echo requests.

use super::net::Channel;
use super::running_tests::spawn_switch;
use super::DatapathInfo;
use crate::config::{ListenAddr, OpenflowConfig};
use crate::switch::{packet_in_channel, ListenerCounters};
use openflow::wire::{decode, encode, peek_header, Hello, Message};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest any wait of these tests may take on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(30);

/// The next whole message on `s`, or `None` when the peer closed.
pub(super) fn next_message(s: &mut impl Read) -> Option<(u32, Message)> {
    let mut buf = vec![0u8; 8];
    s.read_exact(&mut buf).ok()?;
    let len = usize::from(peek_header(&buf)?.length);
    buf.resize(len, 0);
    s.read_exact(&mut buf[8..]).ok()?;
    decode(&buf).ok()
}

/// Connects and reads the switch's hello.
fn connect_and_hear_hello(path: &std::path::Path) -> UnixStream {
    let mut s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let (_, hello) = next_message(&mut s).expect("a hello");
    assert!(matches!(hello, Message::Hello(_)), "{hello:?}");
    s
}

/// True once the switch has closed `s` (nothing more to read).
fn closed_by_switch(s: &mut UnixStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(s.read(&mut byte), Ok(0) | Err(_))
}

fn listener_counters(channel: &crate::switch::ChannelCounters) -> Arc<ListenerCounters> {
    channel.listeners.lock().unwrap()[0].clone()
}

#[test]
fn a_punix_listener_caps_connections_closes_silent_ones_and_removes_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("of.sock");
    let (backend, thread) = spawn_switch(7, None);
    let cfg = OpenflowConfig {
        listen: vec![ListenAddr::Unix(path.clone())],
        max_connections: 2,
        idle_timeout: Duration::from_secs(2),
        ..OpenflowConfig::default()
    };
    let info = DatapathInfo {
        datapath_id: 7,
        name: "switch-7".into(),
        n_tables: 1,
    };
    let (_packet_in_tx, packet_in_rx) = packet_in_channel(16);
    let (channel, _hook) =
        Channel::start(&cfg, backend.handle.clone(), info, packet_in_rx).unwrap();
    assert_eq!(channel.listeners(), [ListenAddr::Unix(path.clone())]);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let counters = listener_counters(&backend.handle.shared.channel);

    // Two connections fill the cap; a third is closed at once and counted.
    let mut answering = connect_and_hear_hello(&path);
    answering
        .write_all(&encode(&Message::Hello(Hello::of13()), 1).unwrap())
        .unwrap();
    let mut silent = connect_and_hear_hello(&path);
    let mut refused = UnixStream::connect(&path).unwrap();
    refused.set_read_timeout(Some(PATIENCE)).unwrap();
    assert!(closed_by_switch(&mut refused), "over the cap yet served");
    assert_eq!(counters.refused.load(Relaxed), 1);

    // The silent one is closed after the idle timeout. The one that answers
    // stays: each echo request comes after half a timeout of silence, so three
    // of them span more than a whole timeout.
    let started = Instant::now();
    let answerer = std::thread::spawn(move || {
        let mut echoes = 0;
        while echoes < 3 {
            let (xid, msg) = next_message(&mut answering).expect("closed while answering");
            if let Message::EchoRequest(data) = msg {
                echoes += 1;
                answering
                    .write_all(&encode(&Message::EchoReply(data), xid).unwrap())
                    .expect("closed while answering");
            }
        }
        answering
    });
    assert!(closed_by_switch(&mut silent));
    let _answering = answerer.join().unwrap();
    assert!(started.elapsed() > cfg.idle_timeout);
    assert_eq!(counters.idle_closed.load(Relaxed), 1);

    // The silent one's place is free again.
    let deadline = Instant::now() + PATIENCE;
    while counters.open.load(Relaxed) > 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _again = connect_and_hear_hello(&path);
    assert_eq!(counters.refused.load(Relaxed), 1);

    drop(channel);
    assert!(!path.exists(), "the socket file outlived the channel");
    backend.handle.stop();
    thread.join().unwrap();
}
