//! Table swaps under concurrent traffic, as `scd` does them: a writer builds each
//! version of the tables beside the published one (a clone of its master copy
//! after random flow-mods) and swaps it in with `arc-swap`, while a reader
//! forwards packets as the forwarding thread does (refresh its snapshot once per
//! round, then answer every packet of the round from the megaflow cache in front
//! of the classifier). Every answer must be exactly what the version the reader
//! held decides, and that version is the one published when the round began or a
//! later one: so a packet that both the old and the new version forward is never
//! dropped, nor sent where neither version sends it, and a stale megaflow never
//! outlives its version.

use arc_swap::ArcSwap;
use dataplane_core::megaflow::MegaflowCache;
use dataplane_core::pipeline::{Classification, Pipeline, Selector};
use openflow::flow::{Action, Field, FlowKey, FlowMatch};
use openflow::FlowSpec;
use proptest::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Destinations are 100.64.0.0 plus a host number below this: few enough that
/// random routes and packets meet.
const HOSTS: u32 = 24;
const BASE: u32 = 0x6440_0000;

/// A route: a /32 or the host's /27, at a priority, out of a port or dropped.
#[derive(Clone, Debug)]
struct Route {
    host: u32,
    whole_prefix: bool,
    priority: u16,
    out: Option<u32>,
}

impl Route {
    fn matcher(&self) -> FlowMatch {
        let m = FlowMatch::any().with(Field::EthType, 0x800);
        if self.whole_prefix {
            m.with_masked(Field::Ipv4Dst, u128::from(BASE + self.host), 0xffff_ffe0)
        } else {
            m.with(Field::Ipv4Dst, u128::from(BASE + self.host))
        }
    }

    fn spec(&self) -> FlowSpec {
        let actions = self.out.map(Action::output).into_iter().collect();
        FlowSpec::new(0, self.priority, self.matcher(), actions)
    }
}

#[derive(Clone, Debug)]
enum Change {
    Add(Route),
    /// Strict delete of the route with this match and priority (if any).
    Delete(Route),
}

fn route() -> impl Strategy<Value = Route> {
    (
        0..HOSTS,
        any::<bool>(),
        prop::sample::select(vec![10u16, 20, 30]),
        prop::option::weighted(0.8, 1..5u32),
    )
        .prop_map(|(host, whole_prefix, priority, out)| Route {
            host,
            whole_prefix,
            priority,
            out,
        })
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![3 => route().prop_map(Change::Add), 2 => route().prop_map(Change::Delete)]
}

/// A TCP packet from a VM towards a host (new source ports: new connections).
fn packet() -> impl Strategy<Value = FlowKey> {
    (0..HOSTS + 4, 1024..1100u16).prop_map(|(host, sport)| FlowKey {
        in_port: 7,
        eth_type: 0x800,
        ip_proto: 6,
        ipv4_src: BASE + 200,
        ipv4_dst: BASE + host,
        l4_src: sport,
        l4_dst: 80,
        ..FlowKey::default()
    })
}

/// Every version in order, each built from the last as `scd`'s control thread
/// does: changes applied to the master copy, then a clone published.
fn versions(initial: &[Route], batches: &[Vec<Change>]) -> Vec<Arc<Pipeline>> {
    let now = Instant::now();
    let mut master = Pipeline::default();
    for r in initial {
        master.add(r.spec(), now).unwrap();
    }
    let mut out = vec![Arc::new(master.clone())];
    for batch in batches {
        for change in batch {
            match change {
                Change::Add(r) => {
                    master.add(r.spec(), now).unwrap();
                }
                Change::Delete(r) => {
                    let m = r.matcher();
                    master.delete(&Selector::strict(0, &m, r.priority)).unwrap();
                }
            }
        }
        out.push(Arc::new(master.clone()));
    }
    out
}

/// Raises its flag when dropped: a reader that panics still lets the writer end.
struct RaiseOnDrop<'a>(&'a AtomicBool);

impl Drop for RaiseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn verdict(pipeline: &Pipeline, key: &FlowKey) -> Vec<Action> {
    let mut c = Classification::default();
    pipeline.classify(key, &mut c);
    c.actions
}

/// Forwards `packets` round after round until the writer is done and the last
/// version was seen; checks each answer. Returns the versions it saw.
fn forward(
    published: &ArcSwap<Pipeline>,
    index: &AtomicUsize,
    rounds: &AtomicUsize,
    writer_done: &AtomicBool,
    versions: &[Arc<Pipeline>],
    verdicts: &[Vec<Vec<Action>>],
    packets: &[FlowKey],
) -> Vec<usize> {
    // Small, so it also starts over under the writer's feet.
    let mut cache = MegaflowCache::with_capacity(8);
    let mut current = published.load_full();
    let mut seen = Vec::new();
    loop {
        let done = writer_done.load(Ordering::SeqCst);
        let at_least = index.load(Ordering::SeqCst);
        let latest = published.load();
        if !Arc::ptr_eq(&latest, &current) {
            current = arc_swap::Guard::into_inner(latest);
        }
        let held = versions
            .iter()
            .position(|v| Arc::ptr_eq(v, &current))
            .expect("the reader holds a published version");
        assert!(
            held >= at_least,
            "the reader went back to version {held} after {at_least} was published"
        );
        if seen.last() != Some(&held) {
            seen.push(held);
        }
        for (p, key) in packets.iter().enumerate() {
            let answer = &cache.lookup(&current, key).actions;
            assert_eq!(
                answer, &verdicts[held][p],
                "packet {key:?} under version {held}"
            );
        }
        rounds.fetch_add(1, Ordering::SeqCst);
        if done && held == versions.len() - 1 {
            return seen;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn a_swap_under_traffic_gives_each_packet_the_old_or_the_new_verdict(
        initial in prop::collection::vec(route(), 0..30),
        batches in prop::collection::vec(prop::collection::vec(change(), 1..8), 1..10),
        packets in prop::collection::vec(packet(), 1..24),
    ) {
        let versions = versions(&initial, &batches);
        let verdicts: Vec<Vec<Vec<Action>>> = versions
            .iter()
            .map(|v| packets.iter().map(|k| verdict(v, k)).collect())
            .collect();
        let published = ArcSwap::new(versions[0].clone());
        let index = AtomicUsize::new(0);
        let rounds = AtomicUsize::new(0);
        let writer_done = AtomicBool::new(false);
        let reader_gone = AtomicBool::new(false);
        let seen = std::thread::scope(|s| {
            s.spawn(|| {
                for (i, version) in versions.iter().enumerate().skip(1) {
                    // Let the reader forward a round on the old version first, so
                    // swaps land between and within its rounds.
                    let before = rounds.load(Ordering::SeqCst);
                    while rounds.load(Ordering::SeqCst) == before
                        && !reader_gone.load(Ordering::SeqCst)
                    {
                        std::thread::yield_now();
                    }
                    // Retired here, on the writer, as scd's control thread does.
                    let _old = published.swap(version.clone());
                    index.store(i, Ordering::SeqCst);
                }
                writer_done.store(true, Ordering::SeqCst);
            });
            let _gone = RaiseOnDrop(&reader_gone);
            forward(&published, &index, &rounds, &writer_done, &versions, &verdicts, &packets)
        });
        // The reader ran on the first version and on the last one, in order.
        prop_assert_eq!(seen.first(), Some(&0));
        prop_assert_eq!(seen.last(), Some(&(versions.len() - 1)));
        prop_assert!(seen.windows(2).all(|w| w[0] < w[1]));
    }
}
