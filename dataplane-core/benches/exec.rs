//! The cost of running actions on a frame in place (`dataplane_core::exec`): a routed
//! flow's actions without groups, and the same copy sent through an ALL group of
//! two buckets (saving and restoring the headers around each bucket); and what
//! port security adds on a bound VM port (a parse and the check of the
//! addresses, `dataplane_core::port_security`) against the parse alone.
//! Run with `cargo bench -p dataplane-core --bench exec`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use dataplane_core::exec::{execute, FrameBuf};
use dataplane_core::packet::parse;
use dataplane_core::pipeline::Pipeline;
use openflow::flow::{Action, Bucket, Field, GroupSpec, GroupType};
use std::time::Instant;

/// An Ethernet + IPv4 + UDP frame of `len` bytes (UDP checksum 0: none).
fn udp_frame(len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&[2, 0, 0, 0, 1, 2]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 1, 1]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip_len = u16::try_from(len - 14).unwrap_or(u16::MAX);
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[100, 64, 1, 1]);
    ip[16..20].copy_from_slice(&[100, 64, 1, 2]);
    let sum = ip
        .chunks(2)
        .fold(0u32, |s, w| s + u32::from(u16::from_be_bytes([w[0], w[1]])));
    let sum = (sum & 0xffff) + (sum >> 16);
    let check = !u16::try_from((sum & 0xffff) + (sum >> 16)).unwrap_or(0);
    ip[10..12].copy_from_slice(&check.to_be_bytes());
    let udp = &mut f[34..42];
    udp[0..2].copy_from_slice(&1000u16.to_be_bytes());
    udp[2..4].copy_from_slice(&2000u16.to_be_bytes());
    udp[4..6].copy_from_slice(&(ip_len - 20).to_be_bytes());
    f
}

fn route() -> Vec<Action> {
    vec![
        Action::set(Field::EthSrc, 0x025c_0000_0001),
        Action::set(Field::EthDst, 0x0200_0000_0102),
        Action::output(2),
    ]
}

fn bench(c: &mut Criterion) {
    let bytes = udp_frame(1000);
    let mut pipeline = Pipeline::default();
    let mut rewritten = route();
    rewritten.insert(2, Action::set(Field::Ipv4Dst, 0x6440_0163));
    pipeline
        .add_group(
            GroupSpec {
                group_id: 1,
                group_type: GroupType::All,
                buckets: vec![Bucket::new(route()), Bucket::new(rewritten)],
            },
            Instant::now(),
        )
        .expect("group");
    let cases = [
        ("route, no group", route()),
        ("all group, 2 buckets", vec![Action::Group(1)]),
    ];
    for (name, actions) in cases {
        let mut frame = FrameBuf::with_capacity(2048);
        frame.fill(&bytes);
        let (_, layout) = parse(frame.bytes(), 1).expect("frame parses");
        c.bench_function(&format!("exec/{name}"), |b| {
            b.iter(|| {
                let mut layout = layout;
                let mut sent = 0usize;
                execute(
                    black_box(&actions),
                    &mut frame,
                    &mut layout,
                    pipeline.groups(),
                    |_, out| sent += out.len(),
                );
                black_box(sent)
            })
        });
    }
}

fn port_security(c: &mut Criterion) {
    use dataplane_core::port_security::PortBinding;
    let frame = udp_frame(1400);
    let binding = PortBinding::new(
        openflow::flow::Mac([2, 0, 0, 0, 1, 1]),
        &[std::net::Ipv4Addr::new(100, 64, 1, 1)],
    )
    .expect("unicast");
    c.bench_function("port_security/parse", |b| {
        b.iter(|| black_box(parse(black_box(&frame), 1).is_ok()))
    });
    c.bench_function("port_security/parse_and_check", |b| {
        b.iter(|| {
            let (key, layout) = parse(black_box(&frame), 1).expect("parses");
            black_box(binding.check(&key, &layout, &frame).is_ok())
        })
    });
}

criterion_group!(benches, bench, port_security);
criterion_main!(benches);
