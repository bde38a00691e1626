use super::*;
use dataplane_core::megaflow::MegaflowCache;
use openflow::flow::{Action, Field, FlowKey, FlowMatch, FlowSpec};
use proptest::prelude::*;
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;

/// A control thread over `initial`, its job queue and what it publishes.
fn control_over(initial: &Pipeline) -> (Control, mpsc::Sender<(Job, Visibility)>, Arc<Published>) {
    let (tx, rx) = mpsc::channel();
    let published = Arc::new(Published::new(initial.clone()));
    (
        Control::new(initial.clone(), published.clone(), rx),
        tx,
        published,
    )
}

/// Sends `f` to the control thread and waits for its result.
fn ask<R: Send + 'static>(
    tx: &mpsc::Sender<(Job, Visibility)>,
    visibility: Visibility,
    f: impl FnOnce(&mut Pipeline, Instant) -> R + Send + 'static,
) -> R {
    let (reply_tx, reply_rx) = mpsc::sync_channel(1);
    let job: Job = Box::new(move |p, now| {
        let result = f(p, now);
        Box::new(move || {
            let _ = reply_tx.send(result);
        })
    });
    tx.send((job, visibility)).unwrap();
    reply_rx.recv_timeout(Duration::from_secs(30)).unwrap()
}

fn route(dst: u32, priority: u16, port: u32) -> FlowSpec {
    let m = FlowMatch::any().with(Field::EthType, 0x800).with_prefix32(
        Field::Ipv4Dst,
        0x6440_0100 + (dst & !1),
        31 + u8::from(dst.is_multiple_of(3)),
    );
    FlowSpec::new(0, priority, m, vec![Action::output(port)])
}

fn packet(dst: u32, sport: u16) -> FlowKey {
    FlowKey {
        in_port: 1,
        eth_type: 0x800,
        ip_proto: 17,
        ipv4_dst: 0x6440_0100 + dst,
        l4_src: sport,
        ..FlowKey::default()
    }
}

#[test]
fn counters_survive_a_publish() {
    let now = Instant::now();
    let mut initial = Pipeline::default();
    initial.add(route(2, 10, 2), now).unwrap();
    let (mut control, tx, published) = control_over(&initial);
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let thread = std::thread::spawn(move || control.run(|| stopped.load(Ordering::Relaxed)));
    let before = published.snapshot();
    let mut cache = MegaflowCache::default();
    let hit = cache.lookup(&before, &packet(2, 1)).clone();
    before.account(&hit.hits, &hit.tables, 100, now);
    ask(&tx, Visibility::Published, move |p, now| {
        p.add(route(8, 10, 3), now).unwrap()
    });
    let after = published.snapshot();
    assert!(!Arc::ptr_eq(&before, &after), "a change was published");
    assert_eq!(after.len(), 2);
    let entry = after
        .entries(0)
        .find(|e| e.spec == route(2, 10, 2))
        .unwrap();
    assert_eq!((entry.packets(), entry.bytes()), (1, 100));
    stop.store(true, Ordering::Relaxed);
    thread.join().unwrap();
}

#[test]
fn a_reply_waits_for_its_publish_and_a_deferred_one_does_not_wait_long() {
    let now = Instant::now();
    let (mut control, tx, published) = control_over(&Pipeline::default());
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let thread = std::thread::spawn(move || control.run(|| stopped.load(Ordering::Relaxed)));
    ask(&tx, Visibility::Published, move |p, _| {
        p.add(route(2, 10, 2), now).unwrap()
    });
    assert_eq!(published.snapshot().len(), 1);
    ask(&tx, Visibility::Deferred, move |p, _| {
        p.add(route(4, 10, 2), now).unwrap()
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while published.snapshot().len() != 2 {
        assert!(
            Instant::now() < deadline,
            "the deferred change was never published"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    stop.store(true, Ordering::Relaxed);
    thread.join().unwrap();
}

/// A batch of flow-mod adds and strict deletes, applied as one job.
#[derive(Clone, Debug)]
enum Change {
    Add(u32, u16, u32),
    Delete(u32, u16),
}

fn apply(p: &mut Pipeline, batch: &[Change], now: Instant) {
    for change in batch {
        match *change {
            Change::Add(dst, priority, port) => {
                p.add(route(dst, priority, port), now).unwrap();
            }
            Change::Delete(dst, priority) => {
                let spec = route(dst, priority, 0);
                let selector =
                    dataplane_core::pipeline::Selector::strict(0, &spec.matcher, priority);
                p.delete(&selector).unwrap();
            }
        }
    }
}

fn arb_change() -> impl Strategy<Value = Change> {
    prop_oneof![
        3 => (0u32..12, 0u16..3, 1u32..4).prop_map(|(d, p, o)| Change::Add(d, p, o)),
        1 => (0u32..12, 0u16..3).prop_map(|(d, p)| Change::Delete(d, p)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    // The forwarding side classifies a stream of packets (through the megaflow
    // cache, as scd's loop does) while the control thread applies batches of
    // flow-mods and publishes: every packet gets exactly what one published
    // version of the tables decides for it, the versions it sees never go back,
    // and so a packet that the versions on both sides of a swap forward is never
    // dropped by the swap.
    #[test]
    fn a_swap_under_traffic_never_drops_what_either_version_forwards(
        initial in proptest::collection::vec(arb_change(), 0..12),
        batches in proptest::collection::vec(proptest::collection::vec(arb_change(), 1..6), 1..12),
        deferred in any::<bool>(),
    ) {
        let now = Instant::now();
        let mut reference = Pipeline::default();
        apply(&mut reference, &initial, now);
        // What every version decides, by the generation it is published under.
        let keys: Vec<FlowKey> = (0..12u32).flat_map(|d| [packet(d, 1), packet(d, 2)]).collect();
        let decide = |p: &Pipeline| -> Vec<Vec<Action>> {
            keys.iter()
                .map(|k| {
                    let mut c = dataplane_core::pipeline::Classification::default();
                    p.classify(k, &mut c);
                    c.actions
                })
                .collect()
        };
        let mut versions = HashMap::new();
        versions.insert(reference.generation(), decide(&reference));
        for batch in &batches {
            apply(&mut reference, batch, now);
            versions.insert(reference.generation(), decide(&reference));
        }
        let (mut control, tx, published) = control_over(&{
            let mut p = Pipeline::default();
            apply(&mut p, &initial, now);
            p
        });
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || control.run(|| stopped.load(Ordering::Relaxed)));
        let done = Arc::new(AtomicBool::new(false));
        let forwarder = std::thread::spawn({
            let (published, done, keys) = (published.clone(), done.clone(), keys.clone());
            move || {
                let mut tables = published.snapshot();
                let mut cache = MegaflowCache::default();
                let mut seen = Vec::new();
                let mut last_round = false;
                loop {
                    published.refresh(&mut tables);
                    for (i, key) in keys.iter().enumerate() {
                        let decision = cache.lookup(&tables, key);
                        seen.push((tables.generation(), i, decision.actions.clone()));
                    }
                    if last_round {
                        return seen;
                    }
                    last_round = done.load(Ordering::Relaxed);
                }
            }
        });
        let visibility = if deferred { Visibility::Deferred } else { Visibility::Published };
        for batch in batches {
            ask(&tx, visibility, move |p, now| apply(p, &batch, now));
        }
        ask(&tx, Visibility::Published, |_, _| ());
        done.store(true, Ordering::Relaxed);
        let seen = forwarder.join().unwrap();
        stop.store(true, Ordering::Relaxed);
        thread.join().unwrap();
        let mut last = 0;
        for (generation, i, actions) in &seen {
            let version = versions.get(generation);
            prop_assert!(version.is_some(), "generation {} was never a whole version", generation);
            prop_assert_eq!(&version.unwrap()[*i], actions);
            prop_assert!(*generation >= last, "versions went back");
            last = *generation;
        }
        prop_assert_eq!(last, reference.generation(), "the last version reached the packets");
    }
}
