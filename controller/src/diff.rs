//! The difference between the flows a switch holds and the flows it should hold,
//! as an ordered list of flow-mods.
//!
//! A flow is identified as OpenFlow identifies it: table, priority and match. Flows
//! to add and to modify are sent first, a barrier, then the deletions: the new rules are in place
//! before the old ones go, so no packet meets a table that has lost its old route
//! without having the new one (make-before-break). This module never sends anything.

use openflow::flow::{flags, port, FlowMatch};
use openflow::text::format_flow;
use openflow::wire::{FlowMod, FlowModCommand};
use openflow::FlowSpec;
use std::collections::{HashMap, HashSet};

/// What a switch should be told, in order: `first`, a barrier, then `then`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Adds and modifications.
    pub first: Vec<FlowMod>,
    /// Deletions, after the barrier.
    pub then: Vec<FlowMod>,
}

impl Plan {
    /// True when the switch already holds exactly the desired flows.
    pub fn is_empty(&self) -> bool {
        self.first.is_empty() && self.then.is_empty()
    }

    /// Number of flow-mods.
    pub fn len(&self) -> usize {
        self.first.len() + self.then.len()
    }
}

/// What a plan changes, flow by flow, in `ovs-ofctl` syntax: what an audit logs
/// when it repairs a switch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Difference {
    /// Flows the switch lacks (added).
    pub missing: Vec<String>,
    /// Flows whose actions or timeouts differ (modified).
    pub changed: Vec<String>,
    /// Flows the switch holds that should not be there (deleted).
    pub extra: Vec<String>,
}

impl Plan {
    /// What this plan changes, flow by flow.
    pub fn difference(&self) -> Difference {
        let text = |m: &FlowMod| format_flow(&m.spec);
        let with = |command: FlowModCommand| -> Vec<String> {
            self.first
                .iter()
                .filter(|m| m.command == command)
                .map(text)
                .collect()
        };
        Difference {
            missing: with(FlowModCommand::Add),
            changed: with(FlowModCommand::ModifyStrict),
            extra: self.then.iter().map(text).collect(),
        }
    }
}

type Key = (u8, u16, FlowMatch);

fn key(f: &FlowSpec) -> Key {
    (f.table_id, f.priority, f.matcher)
}

fn flow_mod(command: FlowModCommand, spec: FlowSpec) -> FlowMod {
    let strict_select = command != FlowModCommand::Add;
    FlowMod {
        command,
        // Modify and delete select our own flows only, by their exact cookie.
        cookie_mask: if strict_select { u64::MAX } else { 0 },
        ..FlowMod::add(spec)
    }
}

/// The flow-mods that turn `installed` into `desired`. Flows of `installed` whose
/// cookie is not `owned_cookie` are someone else's and are left alone.
pub fn plan(installed: &[FlowSpec], desired: &[FlowSpec], owned_cookie: u64) -> Plan {
    let have: HashMap<Key, &FlowSpec> = installed
        .iter()
        .filter(|f| f.cookie == owned_cookie)
        .map(|f| (key(f), f))
        .collect();
    let want: HashSet<Key> = desired.iter().map(key).collect();
    let mut out = Plan::default();
    // Desired order is the compiler's (highest priority first): kept for the adds.
    for w in desired {
        match have.get(&key(w)) {
            None => out.first.push(flow_mod(FlowModCommand::Add, w.clone())),
            Some(h)
                if h.instructions != w.instructions
                    || h.idle_timeout != w.idle_timeout
                    || h.hard_timeout != w.hard_timeout =>
            {
                // A flow whose actions change counts its new behaviour from zero:
                // what a migrated VM's old host forwards is read from such counters.
                let mut spec = w.clone();
                spec.flags |= flags::RESET_COUNTS;
                out.first.push(flow_mod(FlowModCommand::ModifyStrict, spec))
            }
            Some(_) => {}
        }
    }
    for h in installed.iter().filter(|f| f.cookie == owned_cookie) {
        if !want.contains(&key(h)) {
            let mut m = flow_mod(FlowModCommand::DeleteStrict, h.clone());
            m.out_port = port::ANY;
            out.then.push(m);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use openflow::flow::{Action, Field};

    fn flow(prio: u16, dst: u32, out: u32) -> FlowSpec {
        let mut f = FlowSpec::new(
            0,
            prio,
            FlowMatch::any()
                .with(Field::EthType, 0x800)
                .with(Field::Ipv4Dst, dst.into()),
            vec![Action::output(out)],
        );
        f.cookie = 7;
        f
    }

    #[test]
    fn only_the_difference_and_deletions_last() {
        let installed = vec![flow(10, 1, 1), flow(10, 2, 2), flow(10, 3, 3)];
        let desired = vec![flow(10, 1, 1), flow(10, 2, 9), flow(10, 4, 4)];
        let p = plan(&installed, &desired, 7);
        let cmds: Vec<_> = p.first.iter().map(|m| m.command).collect();
        assert_eq!(
            cmds,
            vec![FlowModCommand::ModifyStrict, FlowModCommand::Add]
        );
        assert_ne!(
            p.first[0].spec.flags & flags::RESET_COUNTS,
            0,
            "a changed flow counts its new actions from zero"
        );
        assert_eq!(p.first[1].spec.flags & flags::RESET_COUNTS, 0);
        assert_eq!(p.then.len(), 1);
        assert_eq!(p.then[0].command, FlowModCommand::DeleteStrict);
        assert!(plan(&desired, &desired, 7).is_empty());
        let d = p.difference();
        assert_eq!((d.missing.len(), d.changed.len(), d.extra.len()), (1, 1, 1));
        assert!(d.missing[0].contains("nw_dst=0.0.0.4"), "{d:?}");
        assert!(d.extra[0].contains("nw_dst=0.0.0.3"), "{d:?}");
        assert_eq!(
            plan(&desired, &desired, 7).difference(),
            Difference::default()
        );
    }

    #[test]
    fn foreign_flows_are_left_alone() {
        let mut foreign = flow(5, 9, 9);
        foreign.cookie = 1;
        assert!(plan(&[foreign], &[], 7).is_empty());
    }
}
