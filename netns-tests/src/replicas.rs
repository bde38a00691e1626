//! Replicated controllers for the tests and the benchmark: a real etcd cluster
//! (Debian's `etcd-server`) on one namespace's loopback, with per-member ports
//! and data directories in the caller's temporary directory, and `scc run
//! --store etcd://…` replicas beside it, each with its own OpenFlow and API
//! listeners. Members and replicas are ended by PID when dropped (also when the
//! test fails); one can be killed with SIGKILL on purpose. Never touches the
//! machine's own interfaces.

use crate::{scc_binary, wait_until, Netns};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

/// A process ended by PID (SIGKILL) when dropped.
#[derive(Debug)]
struct Owned(Option<Child>);

impl Owned {
    fn kill(&mut self) -> Result<()> {
        if let Some(mut c) = self.0.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// An etcd cluster of `n` members on the loopback of one namespace.
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<Owned>,
    client_ports: Vec<u16>,
    /// Where the members log.
    pub dir: PathBuf,
}

impl EtcdCluster {
    /// Starts `n` members in `ns`, member `i` with client port `base + i` and peer
    /// port `base + 100 + i`, data and logs under `dir`, and waits until the
    /// cluster elected its leader.
    pub fn start(ns: &Netns, dir: &Path, n: u16, base: u16) -> Result<EtcdCluster> {
        let peers: Vec<String> = (0..n)
            .map(|i| format!("m{i}=http://127.0.0.1:{}", base + 100 + i))
            .collect();
        let mut members = Vec::new();
        for i in 0..n {
            let (client, peer) = (base + i, base + 100 + i);
            let log = std::fs::File::create(dir.join(format!("etcd-m{i}.log")))?;
            let child = ns
                .command("etcd")
                .args(["--name", &format!("m{i}")])
                .arg("--data-dir")
                .arg(dir.join(format!("etcd-m{i}")))
                .args([
                    "--listen-client-urls",
                    &format!("http://127.0.0.1:{client}"),
                ])
                .args([
                    "--advertise-client-urls",
                    &format!("http://127.0.0.1:{client}"),
                ])
                .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
                .args([
                    "--initial-advertise-peer-urls",
                    &format!("http://127.0.0.1:{peer}"),
                ])
                .args(["--initial-cluster", &peers.join(",")])
                .args(["--initial-cluster-token", &format!("test-{base}")])
                .args(["--initial-cluster-state", "new"])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .context("etcd")?;
            members.push(Owned(Some(child)));
        }
        let cluster = EtcdCluster {
            members,
            client_ports: (0..n).map(|i| base + i).collect(),
            dir: dir.to_path_buf(),
        };
        let endpoints = cluster.endpoints();
        wait_until(
            Duration::from_secs(60),
            "the etcd cluster to be healthy",
            || {
                let out = ns
                    .command("etcdctl")
                    .env("ETCDCTL_API", "3")
                    .args([
                        "--endpoints",
                        &endpoints,
                        "--command-timeout=2s",
                        "endpoint",
                        "health",
                    ])
                    .output()?;
                Ok(out.status.success())
            },
        )
        .with_context(|| cluster.logs())?;
        Ok(cluster)
    }

    /// `127.0.0.1:PORT,…` of every member.
    pub fn endpoints(&self) -> String {
        self.client_ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `scc run --store`'s value for this cluster.
    pub fn store_spec(&self) -> String {
        format!("etcd://{}", self.endpoints())
    }

    /// Runs `etcdctl ARGS` (v3 API) against every member, from `ns`.
    pub fn etcdctl(&self, ns: &Netns, args: &[&str]) -> Result<std::process::Output> {
        Ok(ns
            .command("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.endpoints()])
            .args(args)
            .output()?)
    }

    /// Kills member `i` with SIGKILL.
    pub fn kill(&mut self, i: usize) -> Result<()> {
        self.members[i].kill()
    }

    /// Every member's log, for a failure's message.
    pub fn logs(&self) -> String {
        (0..self.members.len())
            .map(|i| {
                let p = self.dir.join(format!("etcd-m{i}.log"));
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(20).collect();
                format!(
                    "--- {}:\n{}",
                    p.display(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// One `scc run --store etcd://…` replica.
#[derive(Debug)]
pub struct SccReplica {
    process: Owned,
    /// Its API, as `scc status --api` takes it (`unix:` its own socket in the
    /// test's directory: replicas on one machine need one each).
    pub api: String,
    /// Its OpenFlow listener, for the switches' `controllers`.
    pub openflow: String,
    /// Its log file.
    pub log: PathBuf,
}

impl SccReplica {
    /// Starts replica `i` in `ns` on `store`: OpenFlow on `openflow_ip:6653+i`,
    /// API on the socket `dir/scc-rI.sock`, log in `dir`. `inventory` is offered for the
    /// very first start (the elected replica writes it to the empty store).
    pub fn start(
        ns: &Netns,
        dir: &Path,
        i: u16,
        store: &str,
        openflow_ip: &str,
        inventory: &Path,
    ) -> Result<SccReplica> {
        let socket = dir.join(format!("scc-r{i}.sock"));
        let api = format!("unix:{}", socket.display());
        let openflow = format!("{openflow_ip}:{}", 6653 + i);
        let log = dir.join(format!("scc-r{i}.log"));
        let child = ns
            .command(scc_binary()?.to_str().context("path")?)
            .args(["run", "--store", store, "--replica-id", &format!("r{i}")])
            .arg("--api-socket")
            .arg(&socket)
            .args(["--openflow", &openflow])
            .arg("--inventory")
            .arg(inventory)
            .arg("--state")
            .arg(dir.join(format!("unused-r{i}.json")))
            .env("SCC_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?;
        Ok(SccReplica {
            process: Owned(Some(child)),
            api,
            openflow,
            log,
        })
    }

    /// False once killed or terminated.
    pub fn is_running(&self) -> bool {
        self.process.0.is_some()
    }

    /// `kill -9`.
    pub fn kill(&mut self) -> Result<()> {
        self.process.kill()
    }

    /// `SIGTERM`, and waits until it has exited.
    pub fn terminate(&mut self) -> Result<()> {
        if let Some(mut c) = self.process.0.take() {
            let pid = libc::pid_t::try_from(c.id())?;
            // SAFETY: kill on the PID of a child we started and have not reaped.
            if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
                anyhow::bail!("kill: {}", std::io::Error::last_os_error());
            }
            c.wait()?;
        }
        Ok(())
    }

    /// What it logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs `scc ARGS --api ITS_API` in `ns`: (success, stdout + stderr).
    pub fn cli(&self, ns: &Netns, args: &[&str]) -> Result<(bool, String)> {
        let out = ns
            .command(scc_binary()?.to_str().context("path")?)
            .args(args)
            .args(["--api", &self.api])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        Ok((out.status.success(), text))
    }

    /// Its `scc status`, or `None` while it does not answer.
    pub fn status(&self, ns: &Netns) -> Result<Option<serde_json::Value>> {
        let (ok, text) = self.cli(ns, &["status", "--json"])?;
        Ok(if ok {
            serde_json::from_str(&text).ok()
        } else {
            None
        })
    }
}

/// Every replica but the one at `except` (the survivors of a kill).
pub fn others(replicas: &[SccReplica], except: usize) -> Vec<&SccReplica> {
    replicas
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != except)
        .map(|(_, r)| r)
        .collect()
}

/// The generation a replica's `scc status` says it leads with, if it leads.
pub fn master_generation(status: &serde_json::Value) -> Option<u64> {
    (status["mastership"]["role"] == "master")
        .then(|| status["mastership"]["generation"].as_u64())
        .flatten()
}

/// True when every host's switch in `status` is connected and accepted the
/// role `role` (`master`/`slave`) with `generation`, and, for a master, confirmed
/// the program version in force.
pub fn switches_accept(status: &serde_json::Value, role: &str, generation: u64) -> bool {
    let version = status["version"].as_u64();
    let hosts = status["hosts"].as_array().cloned().unwrap_or_default();
    !hosts.is_empty()
        && hosts.iter().all(|h| {
            let s = &h["switch"];
            s["connected"] == true
                && s["role"]["role"] == role
                && (role != "master"
                    || (s["role"]["generation"].as_u64() == Some(generation)
                        && s["synced_version"].as_u64() == version))
        })
}

/// The replica that leads, with its generation, once exactly one of `replicas`
/// does and its switches (and the standbys' as slaves) accept it; fails after
/// `within` with every replica's log.
pub fn elected(ns: &Netns, replicas: &[&SccReplica], within: Duration) -> Result<(usize, u64)> {
    crate::wait_for(within, "one leader that every switch accepts", || {
        let mut statuses = Vec::new();
        for r in replicas {
            match r.status(ns)? {
                Some(s) => statuses.push(s),
                None => return Ok(None),
            }
        }
        let leaders: Vec<(usize, u64)> = statuses
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((i, master_generation(s)?)))
            .collect();
        let [(leader, generation)] = leaders[..] else {
            return Ok(None);
        };
        let all = statuses.iter().enumerate().all(|(i, s)| {
            if i == leader {
                switches_accept(s, "master", generation)
            } else {
                switches_accept(s, "slave", 0)
            }
        });
        Ok(all.then_some((leader, generation)))
    })
    .with_context(|| {
        replicas
            .iter()
            .map(|r| format!("--- {}:\n{}", r.log.display(), r.log_text()))
            .collect::<String>()
    })
}

/// The `[controller]` settings of the replicated tests: echoes every second, so
/// a dead connection is noticed soon, and no periodic audit.
pub const CONTROLLER_SETTINGS: &str = "echo_every_s = 1\necho_timeout_s = 4\naudit_every_s = 0";

/// A three-member etcd cluster on `net`'s router and three replicas on it,
/// listening for OpenFlow on the harness's controller address, offered
/// `inventory` for the first start.
pub fn start_three(
    net: &crate::Internet,
    dir: &Path,
    inventory: &Path,
) -> Result<(EtcdCluster, Vec<SccReplica>)> {
    let etcd = EtcdCluster::start(&net.router, dir, 3, 23790)?;
    let store = etcd.store_spec();
    let replicas = (0..3)
        .map(|i| SccReplica::start(&net.router, dir, i, &store, controller_ip()?, inventory))
        .collect::<Result<Vec<_>>>()?;
    Ok((etcd, replicas))
}

/// The address the replicas listen on for OpenFlow (the harness's controller's).
pub fn controller_ip() -> Result<&'static str> {
    crate::cloud::CONTROLLER
        .split(':')
        .next()
        .context("controller address")
}

/// `config`, a host's `scd` configuration as `scc host-config` writes it, with
/// every replica as its controllers instead of the harness's one.
pub fn with_every_replica(config: &str, replicas: &[SccReplica]) -> Result<String> {
    // Over TLS (`ssl:`) when the inventory has `[controller.tls]`, as the
    // harness's inventories do; every replica serves the same certificate.
    let scheme = ["ssl", "tcp"]
        .into_iter()
        .find(|s| config.contains(&format!("\"{s}:{}\"", crate::cloud::CONTROLLER)))
        .with_context(|| format!("no controller {} in:\n{config}", crate::cloud::CONTROLLER))?;
    let one = format!("\"{scheme}:{}\"", crate::cloud::CONTROLLER);
    let every = replicas
        .iter()
        .map(|r| format!("\"{scheme}:{}\"", r.openflow))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(config.replace(&one, &every))
}

/// True when `test` can run here: root, and Debian's `etcd` and `etcdctl`
/// (each missing one is said loudly; see `require_program`).
pub fn can_run(test: &str) -> bool {
    crate::require_root(test)
        && crate::require_program(test, "etcd")
        && crate::require_program(test, "etcdctl")
}
