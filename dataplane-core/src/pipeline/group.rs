//! The group table: all and indirect groups whose buckets hold plain actions (a
//! bucket never names a group, so a group runs in one step), and the rule for which
//! ports a flow or a bucket may output to.

use super::error::GroupError;
use openflow::flow::{port, Action, Bucket, GroupSpec, GroupType, GROUP_MAX};
use openflow::PortNo;
use std::collections::HashMap;
use std::time::Instant;

/// Most groups the switch holds (`OFPGMFC_OUT_OF_GROUPS` beyond).
pub const MAX_GROUPS: usize = 65_536;

/// The switch's groups by id, with their counters.
#[derive(Clone, Debug, Default)]
pub struct GroupTable {
    pub(super) groups: HashMap<u32, GroupEntry>,
}

/// An installed group.
#[derive(Clone, Debug)]
pub struct GroupEntry {
    /// What the controller asked for.
    pub spec: GroupSpec,
    /// When it was added.
    pub installed: Instant,
}

impl GroupTable {
    /// The buckets of group `id`, if it exists.
    pub fn buckets(&self, id: u32) -> Option<&[Bucket]> {
        self.groups.get(&id).map(|g| g.spec.buckets.as_slice())
    }

    /// The group `id`, if it exists.
    pub fn get(&self, id: u32) -> Option<&GroupEntry> {
        self.groups.get(&id)
    }

    /// Every group, by increasing id.
    pub fn iter(&self) -> impl Iterator<Item = &GroupEntry> + '_ {
        let mut ids: Vec<&u32> = self.groups.keys().collect();
        ids.sort_unstable();
        ids.into_iter().filter_map(|id| self.groups.get(id))
    }

    /// Number of groups.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// True when there is no group.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    pub(super) fn validate(spec: &GroupSpec) -> Result<(), GroupError> {
        let id = spec.group_id;
        if id > GROUP_MAX {
            return Err(GroupError::Invalid(id, "group ids end at 0xffffff00"));
        }
        if spec.group_type == GroupType::Indirect && spec.buckets.len() != 1 {
            return Err(GroupError::Invalid(
                id,
                "an indirect group has exactly one bucket",
            ));
        }
        for action in spec.buckets.iter().flat_map(|b| &b.actions) {
            match action {
                Action::Group(_) => return Err(GroupError::ChainingUnsupported(id)),
                Action::Output { port: p, .. } if !valid_output(*p) => {
                    return Err(GroupError::BadBucket(id, *p))
                }
                Action::SetField { field, .. } if !super::writable(*field) => {
                    return Err(GroupError::BadSetField(id, *field))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Whether a flow or a bucket may output to `p` (`TABLE` is for packet-outs only,
/// `NORMAL` has no meaning in scd).
pub(super) fn valid_output(p: PortNo) -> bool {
    !(p == 0 || p == port::ANY || p == port::TABLE || p == port::NORMAL)
}
