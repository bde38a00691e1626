//! Tests of the agreement between forwarding workers: a binding or an added
//! port that one worker refuses is taken back from every worker that took it.
//! The refusing worker is one that stopped (its end of the job queue is gone),
//! which is what a worker whose thread ended looks like to the others, or one
//! that answers only after the others gave up waiting.

use super::counters::PortInfo;
use super::event_loop::Switch;
use super::ports::{Port, PortIo, PortSetError};
use super::test_switch::no_ports;
use super::BindRefused;
use dataplane_core::pipeline::Pipeline;
use dataplane_core::port_security::PortBinding;
use openflow::flow::{Mac, PortNo};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const VM_PORT: PortNo = 5;

fn binding(last: u8) -> PortBinding {
    PortBinding::new(
        Mac([2, 0, 0, 0, 0, last]),
        &[Ipv4Addr::new(100, 64, 0, last)],
    )
    .unwrap()
}

/// A port without a device (every worker reads the same "queue" of it): enough
/// for bindings and the port list, which is all these tests look at.
fn deviceless(number: PortNo) -> (Port, Arc<PortInfo>) {
    let info = Arc::new(PortInfo::new(number, format!("vm{number}"), None));
    let port = Port {
        number,
        io: PortIo::Tunnel(0),
        info: info.clone(),
    };
    (port, info)
}

/// How worker 2 fails to answer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Silent {
    /// Stopped: its end of the job queue is gone.
    Gone,
    /// Stuck: it runs only once `check` is done, and then works through
    /// what was queued for it meanwhile.
    Stuck,
}

/// Three workers: 0 (driven from the test's thread), 1 (running on its own
/// thread while `check` runs) and 2, `silent`. Every worker there has a VM
/// port bound to `binding(1)`. Returns the workers left after `check`, in
/// order.
fn with_worker_2(silent: Silent, check: impl FnOnce(&mut Switch)) -> Vec<Switch> {
    let mut switch = Switch::new(no_ports(19, Pipeline::new(1), 3)).unwrap();
    let mut helpers = std::mem::take(&mut switch.helpers);
    let mut worker_2 = helpers.pop().filter(|_| silent == Silent::Stuck);
    let workers = std::iter::once(&mut switch)
        .chain(helpers.iter_mut())
        .chain(worker_2.iter_mut());
    for worker in workers {
        let (port, _) = deviceless(VM_PORT);
        worker.add_queue(port, Some(binding(1))).unwrap();
    }
    let mut left = run_helpers_while(&mut switch, helpers, 0, check);
    if let Some(worker_2) = worker_2.take() {
        left.extend(run_helpers_while(
            &mut switch,
            vec![worker_2],
            1,
            |switch| {
                // Answered after everything queued before it.
                switch.crew.helper_handles[1].tunnel_status().unwrap();
            },
        ));
    }
    left.insert(0, switch);
    left
}

/// Runs `helpers` (from `first` among worker 0's helpers) on threads while
/// `check` runs on worker 0, and returns them.
fn run_helpers_while(
    switch: &mut Switch,
    helpers: Vec<Switch>,
    first: usize,
    check: impl FnOnce(&mut Switch),
) -> Vec<Switch> {
    let count = helpers.len();
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let threads = Switch::start_helpers(helpers, scope, &stop).unwrap();
        check(switch);
        stop.store(true, Ordering::Relaxed);
        for helper in &switch.crew.helper_handles[first..first + count] {
            helper.wake();
        }
        Switch::join_helpers(threads)
    })
}

fn binding_of(worker: &Switch, port: PortNo) -> Option<&PortBinding> {
    let idx = worker.egress.ports.iter().position(|p| p.number == port)?;
    worker.guards.binding(idx)
}

fn numbers(worker: &Switch) -> Vec<PortNo> {
    worker.egress.ports.iter().map(|p| p.number).collect()
}

#[test]
fn a_binding_a_worker_refuses_is_taken_back_from_every_worker() {
    let workers = with_worker_2(Silent::Gone, |worker_0| {
        let refused = worker_0.bind_everywhere(VM_PORT, Some(binding(2)));
        assert_eq!(
            refused,
            Err(BindRefused::Worker {
                worker: 2,
                port: VM_PORT,
                why: "it is not running"
            })
        );
        let said = refused.unwrap_err().to_string();
        assert!(
            said.contains("every worker kept the previous one"),
            "{said}"
        );
        // Unbinding is refused the same way.
        assert!(worker_0.bind_everywhere(VM_PORT, None).is_err());
        // A port worker 0 does not have is refused before any other is asked.
        assert_eq!(
            worker_0.bind_everywhere(99, None),
            Err(BindRefused::NoSuchPort(99))
        );
    });
    // Worker 1 took each binding and gave it back: both still hold the first.
    assert_eq!(workers.len(), 2);
    for worker in &workers {
        assert_eq!(binding_of(worker, VM_PORT), Some(&binding(1)));
    }
}

#[test]
fn a_port_a_worker_cannot_take_is_removed_from_every_worker() {
    let workers = with_worker_2(Silent::Gone, |worker_0| {
        let (port, info) = deviceless(6);
        worker_0.add_queue(port, Some(binding(6))).unwrap();
        let queues = vec![PortIo::Tunnel(0), PortIo::Tunnel(0)];
        let refused = worker_0.spread_added(queues, &info, Some(binding(6)));
        let Err(PortSetError::Worker { worker: 2, why }) = refused else {
            panic!("{refused:?}");
        };
        assert!(why.contains("not running"), "{why}");
        assert_eq!(numbers(worker_0), [VM_PORT]);
    });
    // Worker 1 had added its queue before worker 2 refused: it is gone again,
    // and the port that was there keeps its binding.
    assert_eq!(workers.len(), 2);
    for worker in &workers {
        assert_eq!(numbers(worker), [VM_PORT]);
        assert_eq!(worker.guards.binding(0), Some(&binding(1)));
    }
}

#[test]
fn a_worker_that_answers_too_late_ends_up_agreeing() {
    // Each request waits for worker 2's answer as long as a handle ever
    // waits (10 s) before it is refused.
    let workers = with_worker_2(Silent::Stuck, |worker_0| {
        let refused = worker_0.bind_everywhere(VM_PORT, Some(binding(2)));
        assert!(
            matches!(refused, Err(BindRefused::Worker { worker: 2, .. })),
            "{refused:?}"
        );
        let (port, info) = deviceless(6);
        worker_0.add_queue(port, None).unwrap();
        let queues = vec![PortIo::Tunnel(0), PortIo::Tunnel(0)];
        let refused = worker_0.spread_added(queues, &info, None);
        assert!(
            matches!(refused, Err(PortSetError::Worker { worker: 2, .. })),
            "{refused:?}"
        );
    });
    // Worker 2 ran what was queued for it, the undoing included.
    assert_eq!(workers.len(), 3);
    for worker in &workers {
        assert_eq!(numbers(worker), [VM_PORT]);
        assert_eq!(binding_of(worker, VM_PORT), Some(&binding(1)));
    }
}
