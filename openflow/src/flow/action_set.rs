//! A packet's action set (OpenFlow 1.3 §5.10): what write-actions accumulate and
//! what runs when the pipeline ends, in the specification's order.

use super::{Action, Field};

/// A packet's action set (OpenFlow 1.3 §5.10): at most one action of each kind, a
/// set-field per field, executed when the pipeline ends in the specification's
/// order: pop VLAN, push VLAN, decrement TTL, set-fields, then the group or, with
/// no group, the output.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default)]
pub struct ActionSet {
    pop_vlan: bool,
    push_vlan: Option<u16>,
    dec_nw_ttl: bool,
    set_fields: Vec<(Field, u128)>,
    group: Option<u32>,
    output: Option<Action>,
}

impl ActionSet {
    /// Empties the set (clear-actions), keeping its allocation.
    pub fn clear(&mut self) {
        self.pop_vlan = false;
        self.push_vlan = None;
        self.dec_nw_ttl = false;
        self.set_fields.clear();
        self.group = None;
        self.output = None;
    }

    /// True when the set holds nothing.
    pub fn is_empty(&self) -> bool {
        !self.pop_vlan
            && self.push_vlan.is_none()
            && !self.dec_nw_ttl
            && self.set_fields.is_empty()
            && self.group.is_none()
            && self.output.is_none()
    }

    /// Write-actions: each action replaces the set's action of its kind.
    pub fn write(&mut self, actions: &[Action]) {
        for action in actions {
            match *action {
                Action::PopVlan => self.pop_vlan = true,
                Action::PushVlan(tpid) => self.push_vlan = Some(tpid),
                Action::DecNwTtl => self.dec_nw_ttl = true,
                Action::SetField { field, value } => {
                    match self.set_fields.iter_mut().find(|(f, _)| *f == field) {
                        Some(slot) => slot.1 = value,
                        None => self.set_fields.push((field, value)),
                    }
                }
                Action::Group(id) => self.group = Some(id),
                Action::Output { .. } => self.output = Some(*action),
            }
        }
    }

    /// Appends the set's actions, in execution order, to `out`.
    pub fn append_to(&self, out: &mut Vec<Action>) {
        if self.pop_vlan {
            out.push(Action::PopVlan);
        }
        if let Some(tpid) = self.push_vlan {
            out.push(Action::PushVlan(tpid));
        }
        if self.dec_nw_ttl {
            out.push(Action::DecNwTtl);
        }
        out.extend(
            self.set_fields
                .iter()
                .map(|(field, value)| Action::SetField {
                    field: *field,
                    value: *value,
                }),
        );
        match (self.group, self.output) {
            (Some(id), _) => out.push(Action::Group(id)),
            (None, Some(output)) => out.push(output),
            (None, None) => {}
        }
    }
}
