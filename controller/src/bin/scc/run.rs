//! `scc run`: the controller daemon's start (the embedded store or replicas on
//! etcd, the OpenFlow listener, the API listeners, signals), and its options for
//! replicated controllers.

use super::read;
use anyhow::{Context, Result};
use controller::daemon::Controller;
use controller::model::Inventory;
use controller::store::Store;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `scc run`'s options for replicated controllers (docs/operations.md).
#[derive(Debug, clap::Args)]
pub(crate) struct ReplicaArgs {
    /// `etcd://HOST:PORT,HOST:PORT,…`: share the state with other replicas in etcd
    /// instead of the embedded file (`--state`); one replica leads, elected.
    #[arg(long)]
    store: Option<String>,
    /// Prefix of this network's keys in etcd.
    #[arg(long, default_value = "/supercloud/")]
    store_prefix: String,
    /// This replica's name in the leader key (default: `scc-PID@API`).
    #[arg(long)]
    replica_id: Option<String>,
    /// The leader's etcd lease in seconds: how long a dead leader holds the
    /// network before a standby takes over (etcd's minimum is 2).
    #[arg(long, default_value_t = 2)]
    lease_ttl: i64,
    /// OpenFlow listener, instead of the inventory's (replicas on one machine).
    #[arg(long)]
    openflow: Option<SocketAddr>,
    /// This replica's API socket, instead of the inventory's `api_socket`
    /// (several replicas on one machine need one each).
    #[arg(long)]
    api_socket: Option<PathBuf>,
    /// This replica's API on TCP, instead of the inventory's `api`; it needs the
    /// inventory's `api_token_file` (bearer token) like the inventory's own.
    #[arg(long)]
    api_tcp: Option<SocketAddr>,
}

pub(crate) fn run(
    inventory: Option<&Path>,
    policy: Option<&Path>,
    state: &Path,
    replicas: &ReplicaArgs,
) -> Result<ExitCode> {
    config_support::logging::init_stderr_logging("SCC_LOG", "info");
    let inventory_file = match inventory {
        Some(p) => Some((Inventory::load(p)?, p.display().to_string())),
        None => None,
    };
    let policy_file = match policy {
        Some(p) => Some((read(p)?, p.display().to_string())),
        None => None,
    };
    let (ctl, replica) = if let Some(spec) = &replicas.store {
        let options = controller::replica::ReplicaOptions {
            endpoints: controller::replica::parse_endpoints(spec).map_err(anyhow::Error::msg)?,
            prefix: replicas.store_prefix.clone(),
            id: replicas.replica_id.clone().unwrap_or_else(|| {
                let api = replicas.api_socket.as_deref().unwrap_or(Path::new(""));
                format!("scc-{}@{}", std::process::id(), api.display())
            }),
            lease_ttl_s: replicas.lease_ttl,
        };
        // The files are used only on the very first start, by the replica elected
        // then; afterwards etcd holds the state (and the migration in progress).
        let started = controller::replica::start(&options, || {
            let start = controller::restart::start(None, inventory_file, policy_file)
                .map_err(|e| format!("store {spec}: {e}"))?;
            for note in &start.notes {
                tracing::info!("{note}");
            }
            Ok(start.persisted)
        });
        match started {
            Ok(r) => (r.controller.clone(), Some(r)),
            Err(e) => {
                eprintln!("{e}");
                return Ok(ExitCode::from(1));
            }
        }
    } else {
        let store = Store::new(state);
        let start = controller::restart::start(store.load()?, inventory_file, policy_file)
            .with_context(|| format!("store {}", state.display()))?;
        for note in &start.notes {
            tracing::info!("{note}");
        }
        match Controller::new(start.persisted, store) {
            Ok(c) => (c, None),
            Err(e) => {
                eprintln!("{e}");
                return Ok(ExitCode::from(1));
            }
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let inv = ctl.inventory();
        let of = replicas.openflow.unwrap_or(inv.openflow);
        let of_tls = match &inv.openflow_tls {
            Some(tls) => Some(controller::net::OpenflowTls::load(tls).context("[controller.tls]")?),
            None => {
                if !of.ip().is_loopback() {
                    tracing::warn!(%of, "OpenFlow in plain text off loopback (insecure_plaintext = true): anyone who reaches this port can pose as a switch; add [controller.tls]");
                }
                None
            }
        };
        let of_listener = tokio::net::TcpListener::bind(of).await.with_context(|| format!("OpenFlow listener on {of}"))?;
        tokio::spawn(controller::net::serve_openflow(of_listener, ctl.clone(), of_tls.clone()));
        let socket = replicas.api_socket.as_ref().unwrap_or(&inv.api_socket);
        let api_listener = controller::api::access::bind_unix(socket).context("API socket")?;
        tokio::spawn(controller::api::serve(api_listener, ctl.clone(), None));
        if let (Some(tcp), None) = (replicas.api_tcp, &inv.api_token_file) {
            anyhow::bail!("--api-tcp {tcp}: the inventory names no api_token_file (an API on TCP needs a bearer token)");
        }
        match (replicas.api_tcp.or(inv.api), inv.api_token_file.as_deref()) {
            (Some(tcp), None) => {
                // A store written before tokens existed: the socket only.
                tracing::warn!(%tcp, "API on TCP not started: the inventory names no api_token_file");
            }
            (Some(tcp), Some(token_file)) => {
                let token = controller::api::access::read_token(token_file)?;
                let listener = tokio::net::TcpListener::bind(tcp).await.with_context(|| format!("API listener on {tcp}"))?;
                tracing::info!(%tcp, "API on TCP, bearer token required");
                tokio::spawn(controller::api::serve(listener, ctl.clone(), Some(token)));
            }
            (None, _) => {}
        }
        tracing::info!(%of, api = %socket.display(), tls = of_tls.is_some(), "scc running");
        // A replica resumes a migration in progress when it is elected
        // (`replica::follow`): a standby changes nothing.
        if replica.is_none() {
            if let Some(resumed) = ctl.resume() {
                tracing::info!("{resumed}");
            }
        }
        tokio::spawn(ctl.clone().follow_the_sun());
        let resign = replica.as_ref().map(|r| r.store.clone());
        if let Some(r) = replica {
            tokio::spawn(controller::replica::follow(r));
        }
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            tokio::select! {
                _ = hup.recv() => match policy {
                    Some(p) => match read(p) {
                        Ok(text) => match ctl.apply_policy(&text, &p.display().to_string()) {
                            Ok(v) => tracing::info!(version = v, "SIGHUP: policy reloaded"),
                            Err(e) => tracing::error!("SIGHUP: policy refused, tables unchanged:\n{e}"),
                        },
                        Err(e) => tracing::error!("SIGHUP: {e:#}"),
                    },
                    None => tracing::warn!("SIGHUP: no --policy file to reload"),
                },
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        if let Some(store) = resign {
            // A standby takes over now rather than when the lease lapses.
            match tokio::task::spawn_blocking(move || store.resign()).await {
                Ok(Ok(())) => tracing::info!("leadership given up"),
                Ok(Err(e)) => tracing::warn!("leadership not given up: {e}"),
                Err(e) => tracing::warn!("leadership not given up: {e}"),
            }
        }
        tracing::info!("scc stopping; switch tables stay as they are");
        Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
    })
}
