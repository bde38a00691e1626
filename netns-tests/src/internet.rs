//! The emulated internet: a router namespace with one /26 "cloud" subnet per host,
//! and the userspace delay line that gives a link its latency where the kernel has
//! no netem. It owns only the namespaces and interfaces it creates.

use crate::{big_receive_buffer, run, unique, veth, Netns};
use anyhow::Result;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// A userspace delay line between two interfaces of one namespace: every frame that
/// arrives on one side leaves on the other `delay` later. It stands in for
/// `tc qdisc ... netem delay`, which this kernel lacks (CONFIG_NET_SCH_NETEM is
/// not set); the harness uses netem where the kernel has it.
#[derive(Debug)]
pub struct DelayLine {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A packet socket for every frame of `ifname`, which it puts in promiscuous mode.
fn packet_socket_all(ifname: &str) -> Result<std::os::fd::OwnedFd> {
    let fd = crate::packet::packet_socket(ifname, libc::SOCK_RAW, 0x0003)?;
    let index = crate::packet::ifindex(ifname)?;
    let mreq = libc::packet_mreq {
        mr_ifindex: i32::try_from(index)?,
        mr_type: u16::try_from(libc::PACKET_MR_PROMISC)?,
        mr_alen: 0,
        mr_address: [0; 8],
    };
    let mlen = u32::try_from(std::mem::size_of::<libc::packet_mreq>())?;
    // SAFETY: `mreq` is a valid packet_mreq of `mlen` bytes.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_ADD_MEMBERSHIP,
            (&mreq as *const libc::packet_mreq).cast(),
            mlen,
        )
    };
    anyhow::ensure!(rc == 0, "promisc: {}", std::io::Error::last_os_error());
    Ok(fd)
}

impl DelayLine {
    /// Starts forwarding between `a` and `b` (both in namespace `ns`) with `delay`.
    pub fn start(ns: &Netns, a: &str, b: &str, delay: Duration) -> Result<DelayLine> {
        let (a, b) = (a.to_string(), b.to_string());
        let sockets = ns.enter(move || -> Result<_> {
            Ok([packet_socket_all(&a)?, packet_socket_all(&b)?])
        })??;
        // The line is a userspace thread: give it room to absorb bursts while the
        // scheduler runs something else, as a router's queue would.
        for socket in &sockets {
            big_receive_buffer(socket, 16 << 20)?;
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut queue: std::collections::VecDeque<(Instant, usize, Vec<u8>)> =
                Default::default();
            let mut buf = vec![0u8; 65_536];
            while !flag.load(Ordering::Relaxed) {
                let now = Instant::now();
                while queue.front().is_some_and(|(due, _, _)| *due <= now) {
                    if let Some((_, out, frame)) = queue.pop_front() {
                        // A full socket buffer is waited out briefly, as a router's
                        // queue would absorb a burst, rather than dropped at once.
                        for _ in 0..50 {
                            // SAFETY: `frame` is valid for reads of its length.
                            let sent = unsafe {
                                libc::send(
                                    sockets[out].as_raw_fd(),
                                    frame.as_ptr().cast(),
                                    frame.len(),
                                    0,
                                )
                            };
                            if sent >= 0 {
                                break;
                            }
                            std::thread::sleep(Duration::from_micros(100));
                        }
                    }
                }
                // Rounded up: a frame due in 0.3 ms must not make the line spin.
                let wait = queue.front().map_or(20, |(due, _, _)| {
                    due.saturating_duration_since(now)
                        .as_micros()
                        .div_ceil(1000)
                        .clamp(0, 20)
                });
                let mut fds = [0, 1].map(|i| libc::pollfd {
                    fd: sockets[i].as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
                // SAFETY: `fds` is a valid array of two pollfd structures.
                unsafe { libc::poll(fds.as_mut_ptr(), 2, i32::try_from(wait).unwrap_or(20)) };
                for (i, sock) in sockets.iter().enumerate() {
                    while let Some((n, kind)) = crate::packet::recv_frame(sock, &mut buf) {
                        // Frames we sent ourselves show up as outgoing: never loop them.
                        if kind != libc::PACKET_OUTGOING {
                            queue.push_back((Instant::now() + delay, 1 - i, buf[..n].to_vec()));
                        }
                    }
                }
            }
        });
        Ok(DelayLine {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for DelayLine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// True when the kernel offers the netem qdisc.
fn have_netem(ns: &Netns) -> bool {
    ns.command("tc")
        .args(["qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
        && ns
            .command("tc")
            .args(["qdisc", "del", "dev", "lo", "root"])
            .status()
            .is_ok()
}

/// Turns off the offloads that would hand a packet socket frames it cannot
/// forward (unfinished checksums, super-frames).
fn no_offloads(ns: &Netns, ifname: &str) -> Result<()> {
    run(ns.command("ethtool").args([
        "-K", ifname, "tx", "off", "tso", "off", "gso", "off", "gro", "off",
    ]))?;
    Ok(())
}

/// An emulated internet: a router namespace with one /26 "cloud" subnet per host
/// from 192.0.2.0/24 (documentation addresses), optional latency per link.
#[derive(Debug)]
pub struct Internet {
    /// Delay lines, stopped before their namespaces go.
    delays: Vec<(DelayLine, Netns)>,
    /// Host namespaces, in the order they were added.
    pub hosts: Vec<Netns>,
    /// The router namespace.
    pub router: Netns,
}

/// The smallest internet: namespaces `a_name` and `b_name` joined by one veth,
/// 192.0.2.1/24 on `a`'s end and 192.0.2.2/24 on `b`'s, both up.
pub fn linked_pair(a_name: &str, b_name: &str) -> Result<(Netns, Netns)> {
    let (a, b) = (Netns::new(a_name)?, Netns::new(b_name)?);
    let (ia, ib) = (unique("lpa"), unique("lpb"));
    veth(&ia, &a, &ib, &b)?;
    for (ns, ifname, addr) in [(&a, &ia, "192.0.2.1/24"), (&b, &ib, "192.0.2.2/24")] {
        ns.ip(&["addr", "add", addr, "dev", ifname])?;
        ns.ip(&["link", "set", ifname, "up"])?;
    }
    Ok((a, b))
}

impl Internet {
    /// A router with one host per entry of `delays_ms` (the one-way delay of that
    /// host's link, if any), all named after `prefix`.
    pub fn with_hosts(prefix: &str, delays_ms: &[Option<u32>]) -> Result<Internet> {
        let mut net = Internet::new(prefix)?;
        for delay in delays_ms {
            net.add_host(prefix, *delay)?;
        }
        Ok(net)
    }

    /// A router with no hosts yet.
    pub fn new(prefix: &str) -> Result<Internet> {
        let router = Netns::new(&unique(&format!("{prefix}-inet-")))?;
        run(Command::new("ip").args([
            "netns",
            "exec",
            router.name(),
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]))?;
        Ok(Internet {
            delays: Vec::new(),
            hosts: Vec::new(),
            router,
        })
    }

    /// The underlay address of host `i` (0-based): 192.0.2.(64*i + 2).
    pub fn host_addr(i: usize) -> String {
        format!("192.0.2.{}", 64 * i + 2)
    }

    /// The `[[peer]]` sections of host `host`'s `scd`: every other host `j`,
    /// with public key `keys[j]`, on tunnel port `port_of(j)`, reached at
    /// [`Internet::host_addr`] on UDP port `wg_port`.
    pub fn peer_sections(
        keys: &[crate::KeyPair],
        host: usize,
        port_of: impl Fn(usize) -> u32,
        wg_port: u16,
    ) -> String {
        keys.iter()
            .enumerate()
            .filter(|(j, _)| *j != host)
            .map(|(j, key)| {
                format!(
                    "[[peer]]\nport = {}\nname = \"host{j}\"\npublic_key = \"{}\"\nendpoint = \"{}:{wg_port}\"\n",
                    port_of(j),
                    key.public,
                    Internet::host_addr(j)
                )
            })
            .collect()
    }

    /// Adds a host namespace in its own cloud subnet; `delay_ms` adds latency on
    /// the router's side of its link (tc netem), both directions seeing it once.
    pub fn add_host(&mut self, prefix: &str, delay_ms: Option<u32>) -> Result<&Netns> {
        let i = self.hosts.len();
        anyhow::ensure!(i < 4, "at most four clouds fit in 192.0.2.0/24");
        let host = Netns::new(&unique(&format!("{prefix}-host{i}-")))?;
        let outside = unique("scr");
        let inside = unique("sch");
        let netem = delay_ms.is_some() && have_netem(&self.router);
        if let (Some(ms), false) = (delay_ms, netem) {
            // router <-> [delay line namespace] <-> host
            let line = Netns::new(&unique(&format!("{prefix}-delay{i}-")))?;
            let (d_router, d_host) = (unique("scd"), unique("scd"));
            veth(&outside, &self.router, &d_router, &line)?;
            veth(&inside, &host, &d_host, &line)?;
            for ifname in [&d_router, &d_host] {
                line.ip(&["link", "set", ifname, "up"])?;
                no_offloads(&line, ifname)?;
            }
            no_offloads(&self.router, &outside)?;
            no_offloads(&host, &inside)?;
            let delay = DelayLine::start(
                &line,
                &d_router,
                &d_host,
                Duration::from_millis(u64::from(ms)),
            )?;
            self.delays.push((delay, line));
        } else {
            veth(&outside, &self.router, &inside, &host)?;
        }
        let base = 64 * i;
        self.router.ip(&[
            "addr",
            "add",
            &format!("192.0.2.{}/26", base + 1),
            "dev",
            &outside,
        ])?;
        self.router.ip(&["link", "set", &outside, "up"])?;
        host.ip(&[
            "addr",
            "add",
            &format!("{}/26", Internet::host_addr(i)),
            "dev",
            &inside,
        ])?;
        host.ip(&["link", "set", &inside, "up"])?;
        host.ip(&[
            "route",
            "add",
            "192.0.2.0/24",
            "via",
            &format!("192.0.2.{}", base + 1),
        ])?;
        if let (Some(ms), true) = (delay_ms, netem) {
            run(self.router.command("tc").args([
                "qdisc",
                "add",
                "dev",
                &outside,
                "root",
                "netem",
                "delay",
                &format!("{ms}ms"),
            ]))?;
        }
        self.hosts.push(host);
        Ok(&self.hosts[i])
    }
}
