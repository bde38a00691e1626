//! Generators of policies for benchmarks and tests: shortest-path routing on
//! fat-trees and on random "topology-zoo style" graphs (also written with links,
//! for the global compiler), and ACLs.
//!
//! This module owns only the construction of policy *text* (in Frenetic's syntax,
//! so benchmarks measure the whole compiler, parser included) and of the topology it
//! routes over. It never compiles anything and uses a fixed-seed generator, so
//! every run produces the same inputs.

use std::collections::VecDeque;
use std::fmt::Write as _;

/// A fixed-seed xorshift generator (inputs must not change between runs).
fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut rng = seed | 1;
    move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    }
}

/// An undirected topology: switches `1..=n`, each edge `(a, pa, b, pb)` joins port
/// `pa` of `a` to port `pb` of `b`; hosts hang off `(switch, port)`.
#[derive(Debug, Clone, Default)]
pub struct Topology {
    /// Number of switches.
    pub switches: u64,
    /// Switch-to-switch links.
    pub edges: Vec<(u64, u64, u64, u64)>,
    /// Hosts: `(host number, switch, port)`.
    pub hosts: Vec<(u64, u64, u64)>,
}

/// A fat-tree of arity `k` (k even): k²/4 core, k²/2 aggregation and k²/2 edge
/// switches, k³/4 hosts.
pub fn fat_tree(k: u64) -> Topology {
    let half = k / 2;
    let core = half * half;
    let mut t = Topology {
        switches: core + k * k,
        ..Topology::default()
    };
    // Numbering: cores 1..=core; pod p aggregation core+p*k+1..=core+p*k+half,
    // pod p edge core+p*k+half+1..=core+(p+1)*k.
    let mut host = 0;
    for p in 0..k {
        for a in 0..half {
            let agg = core + p * k + a + 1;
            for c in 0..half {
                let coresw = a * half + c + 1;
                // agg port half+1+c up to core port p+1
                t.edges.push((agg, half + 1 + c, coresw, p + 1));
            }
            for e in 0..half {
                let edge = core + p * k + half + e + 1;
                // agg port e+1 down to edge port half+1+a
                t.edges.push((agg, e + 1, edge, half + 1 + a));
            }
        }
        for e in 0..half {
            let edge = core + p * k + half + e + 1;
            for h in 0..half {
                host += 1;
                t.hosts.push((host, edge, h + 1));
            }
        }
    }
    t
}

/// A connected random graph in the style of the Internet Topology Zoo (a spanning
/// tree plus extra edges, mean degree about 3), with one host per switch.
pub fn zoo(n: u64, seed: u64) -> Topology {
    let mut next = xorshift(seed);
    let mut ports = vec![1u64; usize::try_from(n + 1).unwrap_or(0)];
    let mut t = Topology {
        switches: n,
        ..Topology::default()
    };
    let link = |t: &mut Topology, a: u64, b: u64, ports: &mut Vec<u64>| {
        if a == b
            || t.edges
                .iter()
                .any(|e| (e.0, e.2) == (a, b) || (e.0, e.2) == (b, a))
        {
            return;
        }
        let (ia, ib) = (
            usize::try_from(a).unwrap_or(0),
            usize::try_from(b).unwrap_or(0),
        );
        ports[ia] += 1;
        ports[ib] += 1;
        t.edges.push((a, ports[ia], b, ports[ib]));
    };
    for s in 2..=n {
        let parent = next() % (s - 1) + 1;
        link(&mut t, s, parent, &mut ports);
    }
    for _ in 0..n / 2 {
        let a = next() % n + 1;
        let b = next() % n + 1;
        link(&mut t, a, b, &mut ports);
    }
    for s in 1..=n {
        t.hosts.push((s, s, 1));
    }
    t
}

/// The MAC address of host `h` (`00:00:00:00:hh:hh`).
pub fn host_mac(h: u64) -> String {
    let b = h.to_be_bytes();
    format!("00:00:{:02x}:{:02x}:{:02x}:{:02x}", b[4], b[5], b[6], b[7])
}

/// Next hops: for every switch and destination switch, the port towards it
/// (breadth-first shortest paths).
fn next_hops(t: &Topology) -> Vec<Vec<Option<u64>>> {
    let n = usize::try_from(t.switches).unwrap_or(0);
    let mut adj: Vec<Vec<(usize, u64)>> = vec![Vec::new(); n + 1];
    for &(a, pa, b, pb) in &t.edges {
        let (a, b) = (
            usize::try_from(a).unwrap_or(0),
            usize::try_from(b).unwrap_or(0),
        );
        adj[a].push((b, pa));
        adj[b].push((a, pb));
    }
    let mut hop = vec![vec![None; n + 1]; n + 1];
    for dst in 1..=n {
        // BFS from dst; the parent's port is the hop towards dst.
        let mut seen = vec![false; n + 1];
        seen[dst] = true;
        let mut q = VecDeque::from([dst]);
        while let Some(u) = q.pop_front() {
            for &(v, _) in &adj[u] {
                if !seen[v] {
                    seen[v] = true;
                    // v reaches dst through u: find v's port to u.
                    hop[v][dst] = adj[v].iter().find(|(w, _)| *w == u).map(|(_, p)| *p);
                    q.push_back(v);
                }
            }
        }
    }
    hop
}

/// Shortest-path routing by destination MAC, one union branch per switch:
/// `filter switch = s; (filter ethDst = h1; port := p1 + …)`.
pub fn routing_policy(t: &Topology) -> String {
    let hop = next_hops(t);
    // Every switch names every host: spell each MAC once.
    let macs: Vec<String> = t.hosts.iter().map(|&(h, _, _)| host_mac(h)).collect();
    let mut out = String::new();
    for s in 1..=t.switches {
        if s > 1 {
            out.push_str(" +\n");
        }
        let _ = write!(out, "filter switch = {s}; (");
        let mut first = true;
        for (&(_, hs, hp), mac) in t.hosts.iter().zip(&macs) {
            let port = if hs == s {
                Some(hp)
            } else {
                hop[usize::try_from(s).unwrap_or(0)][usize::try_from(hs).unwrap_or(0)]
            };
            let Some(port) = port else { continue };
            if !first {
                out.push_str(" + ");
            }
            first = false;
            let _ = write!(out, "filter ethDst = {mac}; port := {port}");
        }
        if first {
            out.push_str("drop");
        }
        out.push(')');
    }
    out
}

/// The same routing as a program with links, for the global compiler:
/// `(routing; links)*; routing`, every edge a link each way (`a@pa => b@pb +
/// b@pb => a@pa`). A packet is routed hop by hop over the links and leaves at its
/// destination's host port.
pub fn linked_routing_policy(t: &Topology) -> String {
    let routing = routing_policy(t);
    let mut links = String::new();
    for &(a, pa, b, pb) in &t.edges {
        if !links.is_empty() {
            links.push_str(" +\n");
        }
        let _ = write!(links, "{a}@{pa} => {b}@{pb} + {b}@{pb} => {a}@{pa}");
    }
    format!("(({routing});\n({links}))*;\n({routing})")
}

/// An ACL of `n` deny rules in front of a two-port bridge:
/// `filter not (t1 or t2 or …); (filter port = 1; port := 2 + …)`, with the tests
/// grouped as a balanced tree so the text nests only log n deep.
pub fn acl_policy(n: usize, seed: u64) -> String {
    format!("filter not {};\n{BRIDGE}", acl_entries(n, seed))
}

/// The same ACL written after the bridge (`bridge; filter not (…)`, the same
/// packets since no entry tests the port): it is not a leading guard, so it goes
/// through the FDD, whose size is quadratic in such ACLs (see `guard.rs`).
pub fn acl_after_policy(n: usize, seed: u64) -> String {
    format!("{BRIDGE};\nfilter not {}", acl_entries(n, seed))
}

const BRIDGE: &str = "(filter port = 1; port := 2 + filter port = 2; port := 1)";

/// `(e1 or e2 or …)`: `n` random deny entries as a balanced tree.
fn acl_entries(n: usize, seed: u64) -> String {
    let mut next = xorshift(seed);
    let tests: Vec<String> = (0..n)
        .map(|_| {
            let r = next();
            let src = format!("10.{}.{}.0/24", (r >> 8) & 0xff, (r >> 16) & 0xff);
            let dst = format!(
                "10.{}.{}.{}",
                (r >> 24) & 0xff,
                (r >> 32) & 0xff,
                (r >> 40) & 0xff
            );
            let port = 1 + (r >> 48) % 1024;
            match r % 3 {
                0 => format!("(ip4Src = {src} and tcpDstPort = {port})"),
                1 => format!("(ip4Dst = {dst} and udpDstPort = {port})"),
                _ => format!("(ip4Src = {src} and ip4Dst = {dst})"),
            }
        })
        .collect();
    fn group(ts: &[String]) -> String {
        match ts {
            [] => "false".into(),
            [t] => t.clone(),
            _ => {
                let (a, b) = ts.split_at(ts.len() / 2);
                format!("({} or\n{})", group(a), group(b))
            }
        }
    }
    group(&tests)
}
