//! The outputs to the controller among a classification's actions, each with
//! the pipeline fields a packet-in must carry for it (OpenFlow 1.3 §7.4.1): the
//! entry that sent the packet and the metadata in force at that moment.
//!
//! Classification notes them while it walks the tables, so they are cached with
//! the rest of the classification and a cache hit reproduces them exactly. This
//! module only records; it never executes an action nor reads frame bytes.

use super::group::GroupTable;
use crate::flow_id::FlowId;
use openflow::flow::{port, Action};

/// One output to `CONTROLLER`, in the order the executor meets them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControllerOutput {
    /// The entry whose instructions hold the output: for a group's bucket, the
    /// entry that ran the group; for the action set, the entry that wrote the
    /// output (or the group) into it.
    pub entry: FlowId,
    /// The packet's metadata when the output runs: as the table it is in saw it
    /// for apply-actions (write-metadata runs after them), as the last table left
    /// it for the action set.
    pub metadata: u64,
}

/// Which entries wrote the action set's output and group, so that an output
/// to the controller the set runs at the end is told apart by who asked for it.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct SetWriters {
    output: Option<FlowId>,
    group: Option<FlowId>,
}

impl SetWriters {
    /// `entry` wrote `actions` into the set: it now owns the kinds it wrote.
    pub(super) fn wrote(&mut self, entry: FlowId, actions: &[Action]) {
        for action in actions {
            match action {
                Action::Output { .. } => self.output = Some(entry),
                Action::Group(_) => self.group = Some(entry),
                _ => {}
            }
        }
    }

    /// Clear-actions.
    pub(super) fn clear(&mut self) {
        *self = SetWriters::default();
    }

    /// Notes the controller outputs of the action set, `actions` being what it
    /// appended to the classification (at most one output or one group).
    pub(super) fn note(
        &self,
        actions: &[Action],
        metadata: u64,
        groups: &GroupTable,
        out: &mut Vec<ControllerOutput>,
    ) {
        for action in actions {
            let writer = match action {
                Action::Output { .. } => self.output,
                Action::Group(_) => self.group,
                _ => None,
            };
            if let Some(entry) = writer {
                note(std::slice::from_ref(action), entry, metadata, groups, out);
            }
        }
    }
}

/// Notes every output to the controller that running `actions` makes, the
/// buckets of the groups they name included, for `entry` at `metadata`: each
/// one the list holds, whether or not it will run (a bucket's `dec_ttl` may
/// fail), in the order `exec::execute_counted` numbers them, so the place it
/// gives an output is the index of its note.
pub(super) fn note(
    actions: &[Action],
    entry: FlowId,
    metadata: u64,
    groups: &GroupTable,
    out: &mut Vec<ControllerOutput>,
) {
    let mut one = |actions: &[Action]| {
        let controller_outputs = actions
            .iter()
            .filter(|a| matches!(a, Action::Output { port, .. } if *port == port::CONTROLLER));
        for _ in controller_outputs {
            out.push(ControllerOutput { entry, metadata });
        }
    };
    for action in actions {
        match action {
            Action::Output { .. } => one(std::slice::from_ref(action)),
            Action::Group(id) => {
                // Buckets never name groups, so one level is all there is.
                for bucket in groups.buckets(*id).unwrap_or(&[]) {
                    one(&bucket.actions);
                }
            }
            _ => {}
        }
    }
}
