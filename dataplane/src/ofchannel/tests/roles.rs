//! The OpenFlow session's controller roles (master, slave, generation ids)
//! and what each connection asks to hear (set-async).

use super::*;

fn role_request(role: ControllerRole, generation_id: u64) -> Vec<u8> {
    enc(
        &Message::RoleRequest(Role {
            role,
            generation_id,
        }),
        5,
    )
}

#[test]
fn roles_master_slave_and_stale_generation() {
    let reg = Arc::new(Registry::default());
    let b = Local::new();
    let (mut a, mut c) = (greeted(&reg, &b), greeted(&reg, &b));
    let out = run(&mut a, &b, &[role_request(ControllerRole::Master, 10)]);
    assert_eq!(
        out.replies[0].1,
        Message::RoleReply(Role {
            role: ControllerRole::Master,
            generation_id: 10
        })
    );
    run(&mut c, &b, &[role_request(ControllerRole::Master, 11)]);
    assert_eq!(a.conn.role(), ControllerRole::Slave);
    let out = run(
        &mut a,
        &b,
        &[
            add("actions=drop", 6),
            enc(
                &Message::PacketOut(PacketOut {
                    buffer_id: None,
                    in_port: port::CONTROLLER,
                    actions: vec![Action::output(1)],
                    data: vec![0; 60],
                }),
                7,
            ),
            role_request(ControllerRole::Master, 9),
            role_request(ControllerRole::NoChange, 0),
        ],
    );
    let got: Vec<Option<ErrorCode>> = out.replies.iter().map(|(_, m)| error_code(m)).collect();
    assert_eq!(
        got,
        vec![
            Some(ErrorCode::BadRequest(BadRequest::IsSlave)),
            Some(ErrorCode::BadRequest(BadRequest::IsSlave)),
            Some(ErrorCode::RoleRequestFailed(RoleRequestFailed::Stale)),
            None,
        ]
    );
    assert_eq!(b.len(), 0);
    assert!(b.outs.lock().unwrap().is_empty());
}

#[test]
fn slave_refusals_cover_groups_and_undecoded_changes_and_generations_wrap() {
    let reg = Arc::new(Registry::default());
    let b = Local::new();
    let mut a = session(&reg);
    run(&mut a, &b, &[hello()]);
    // Port-mod (16) and table-mod (17) headers with a body scd does not decode.
    let raw = |t: u8| {
        let mut m = vec![4, t, 0, 16, 0, 0, 0, 9];
        m.extend_from_slice(&[0; 8]);
        m
    };
    let group = enc(
        &Message::GroupMod(GroupMod {
            command: GroupModCommand::Add,
            spec: GroupSpec {
                group_id: 7,
                group_type: openflow::flow::GroupType::All,
                buckets: vec![openflow::flow::Bucket::new(vec![Action::output(1)])],
            },
        }),
        8,
    );
    let out = run(
        &mut a,
        &b,
        &[
            role_request(ControllerRole::Slave, u64::MAX - 1),
            group.clone(),
            raw(16),
            raw(17),
            // u64::MAX - 1 + 3 wraps to 1: newer, as the spec's signed distance says.
            role_request(ControllerRole::Master, 1),
            role_request(ControllerRole::Slave, u64::MAX),
            group,
        ],
    );
    let got: Vec<Option<ErrorCode>> = out.replies.iter().map(|(_, m)| error_code(m)).collect();
    assert_eq!(
        got,
        vec![
            None,
            Some(ErrorCode::BadRequest(BadRequest::IsSlave)),
            Some(ErrorCode::BadRequest(BadRequest::IsSlave)),
            Some(ErrorCode::BadRequest(BadRequest::IsSlave)),
            None,
            Some(ErrorCode::RoleRequestFailed(RoleRequestFailed::Stale)),
        ]
    );
    assert_eq!(a.conn.role(), ControllerRole::Master);
    assert_eq!(group_descs(&b.pipeline.lock().unwrap()).len(), 1);
}

#[test]
fn asynchronous_messages_skip_slaves() {
    use crate::ofchannel::stream::OfStream;
    use std::io::Read;
    use std::os::unix::net::UnixStream;
    let reg = Arc::new(Registry::default());
    let b = Local::new();
    let (master_end, mut master_peer) = UnixStream::pair().unwrap();
    let (slave_end, mut slave_peer) = UnixStream::pair().unwrap();
    let mut master = Session::new(
        reg.add("master".into(), Some(OfStream::Unix(master_end))),
        reg.clone(),
    );
    let mut slave = Session::new(
        reg.add("slave".into(), Some(OfStream::Unix(slave_end))),
        reg.clone(),
    );
    run(
        &mut master,
        &b,
        &[hello(), role_request(ControllerRole::Master, 1)],
    );
    run(
        &mut slave,
        &b,
        &[hello(), role_request(ControllerRole::Slave, 1)],
    );
    let removed = Message::FlowRemoved(FlowRemoved {
        cookie: 0,
        priority: 5,
        reason: FlowRemovedReason::IdleTimeout,
        table_id: 0,
        duration_sec: 1,
        duration_nsec: 0,
        idle_timeout: 1,
        hard_timeout: 0,
        packet_count: 0,
        byte_count: 0,
        matcher: openflow::flow::FlowMatch::any(),
    });
    assert_eq!(reg.broadcast(&removed), 1, "the master only");
    let mut buf = vec![0u8; 4096];
    let n = master_peer.read(&mut buf).unwrap();
    assert_eq!(decode(&buf[..n]).unwrap().1, removed);
    slave_peer.set_nonblocking(true).unwrap();
    assert!(slave_peer.read(&mut buf).is_err(), "nothing for the slave");
}

#[test]
fn set_async_is_kept_per_connection_and_get_async_reports_it() {
    let reg = Arc::new(Registry::default());
    let b = Local::new();
    let (mut a, mut c) = (greeted(&reg, &b), greeted(&reg, &b));
    let faucet = openflow::wire::AsyncConfig {
        packet_in_mask: [3, 0],
        port_status_mask: [7, 7],
        flow_removed_mask: [7, 0],
    };
    let out = run(
        &mut a,
        &b,
        &[
            enc(&Message::SetAsync(faucet), 6),
            enc(&Message::GetAsyncRequest, 7),
        ],
    );
    // Set-async has no reply; get-async answers with what was set.
    assert_eq!(out.replies, vec![(7, Message::GetAsyncReply(faucet))]);
    let out = run(&mut c, &b, &[enc(&Message::GetAsyncRequest, 8)]);
    assert_eq!(
        out.replies,
        vec![(
            8,
            Message::GetAsyncReply(openflow::wire::AsyncConfig::default())
        )]
    );
}
