//! For the crate's tests: a switch with no ports running on its own thread, to
//! reach through its handle as the metrics, the signals and the OpenFlow channel do.

use super::{Switch, SwitchHandle, SwitchParams};
use dataplane_core::pipeline::Pipeline;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A running switch; stopped when dropped.
#[derive(Debug)]
pub(crate) struct Running {
    /// Its handle.
    pub(crate) handle: SwitchHandle,
    stop: Arc<AtomicBool>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Starts a switch (datapath id 42, no ports) with `pipeline` as its tables.
pub(crate) fn running(pipeline: Pipeline) -> Running {
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel();
    let stopped = stop.clone();
    std::thread::spawn(move || {
        let mut switch = Switch::new(no_ports(42, pipeline, 1)).unwrap();
        tx.send(switch.handle()).unwrap();
        switch.run(&stopped).unwrap();
    });
    Running {
        handle: rx.recv().unwrap(),
        stop,
    }
}

/// A switch `datapath_id` with no ports, `pipeline` as its tables and `workers`
/// forwarding workers.
pub(crate) fn no_ports(datapath_id: u64, pipeline: Pipeline, workers: usize) -> SwitchParams {
    SwitchParams {
        datapath_id,
        ports: vec![],
        probes: vec![],
        tunnels: None,
        arp: None,
        port_arp: vec![],
        dhcp: None,
        nd: Default::default(),
        bindings: Vec::new(),
        gateway_mac: openflow::Mac([2, 0, 0, 0, 0, 1]),
        gateway_ip: std::net::Ipv4Addr::new(100, 64, 0, 1),
        pipeline,
        workers,
    }
}
