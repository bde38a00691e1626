//! Group-mod (`OFPT_GROUP_MOD`) and the group description entries (`ofp_group_desc`)
//! on the wire.
//!
//! This module owns the wire form of a [`GroupSpec`]: the group-mod commands (add,
//! modify, delete), the group types scd runs (all, indirect) and the buckets
//! (`ofp_bucket`: weight, watch port, watch group, actions). Group-mods are decoded
//! strictly: unknown commands are `OFPGMFC_BAD_COMMAND`, select and fast-failover
//! groups `OFPGMFC_BAD_TYPE`, malformed buckets `OFPGMFC_BAD_BUCKET`. It never decides
//! what a group-mod does to a group table, and never panics on any input.

use super::action::{decode_actions, encode_actions};
use super::buf::{Put, Reader};
use super::error::{ErrorCode, GroupModFailed};
use super::oxm::L4Kind;
use super::Fail;
use crate::flow::{Bucket, GroupSpec, GroupType, GROUP_ALL, GROUP_MAX};

/// Bytes of an `ofp_bucket` before its actions.
const BUCKET_HEADER_LEN: usize = 16;

/// `ofp_group_mod_command`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum GroupModCommand {
    /// New group.
    Add,
    /// Replace the type and buckets of an existing group.
    Modify,
    /// Remove a group (or every group, with [`GROUP_ALL`]).
    Delete,
}

impl GroupModCommand {
    fn to_wire(self) -> u16 {
        match self {
            GroupModCommand::Add => 0,
            GroupModCommand::Modify => 1,
            GroupModCommand::Delete => 2,
        }
    }

    fn from_wire(v: u16) -> Option<GroupModCommand> {
        Some(match v {
            0 => GroupModCommand::Add,
            1 => GroupModCommand::Modify,
            2 => GroupModCommand::Delete,
            _ => return None,
        })
    }
}

fn type_to_wire(t: GroupType) -> u8 {
    match t {
        GroupType::All => 0,
        GroupType::Indirect => 2,
    }
}

fn type_from_wire(v: u8) -> Option<GroupType> {
    match v {
        0 => Some(GroupType::All),
        2 => Some(GroupType::Indirect),
        _ => None,
    }
}

fn group_fail(code: GroupModFailed, why: impl Into<String>) -> Fail {
    Fail::new(ErrorCode::GroupModFailed(code), why)
}

/// An `OFPT_GROUP_MOD`.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct GroupMod {
    /// What to do.
    pub command: GroupModCommand,
    /// The group (for delete only `group_id` counts; it may be [`GROUP_ALL`]).
    pub spec: GroupSpec,
}

impl GroupMod {
    /// An add of `spec`.
    pub fn add(spec: GroupSpec) -> GroupMod {
        GroupMod {
            command: GroupModCommand::Add,
            spec,
        }
    }

    /// A delete of group `group_id` ([`GROUP_ALL`]: every group).
    pub fn delete(group_id: u32) -> GroupMod {
        GroupMod {
            command: GroupModCommand::Delete,
            spec: GroupSpec {
                group_id,
                group_type: GroupType::All,
                buckets: Vec::new(),
            },
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<GroupMod, Fail> {
        let command = r.u16()?;
        let group_type = r.u8()?;
        r.skip(1)?;
        let group_id = r.u32()?;
        let command = GroupModCommand::from_wire(command)
            .ok_or_else(|| group_fail(GroupModFailed::BadCommand, format!("command {command}")))?;
        let valid_id =
            group_id <= GROUP_MAX || (command == GroupModCommand::Delete && group_id == GROUP_ALL);
        if !valid_id {
            return Err(group_fail(
                GroupModFailed::InvalidGroup,
                format!("group id {group_id:#x}"),
            ));
        }
        let group_type = type_from_wire(group_type).ok_or_else(|| {
            group_fail(
                GroupModFailed::BadType,
                format!("group type {group_type} (scd runs all and indirect)"),
            )
        })?;
        let buckets = decode_buckets(r.rest())?;
        Ok(GroupMod {
            command,
            spec: GroupSpec {
                group_id,
                group_type,
                buckets,
            },
        })
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.put_u16(self.command.to_wire());
        out.put_u8(type_to_wire(self.spec.group_type));
        out.put_u8(0);
        out.put_u32(self.spec.group_id);
        encode_buckets(out, &self.spec.buckets);
    }
}

/// Appends one `ofp_group_desc` (a group-desc multipart reply entry).
pub(crate) fn encode_group_desc(out: &mut Vec<u8>, spec: &GroupSpec) {
    let start = out.len();
    out.put_u16(0);
    out.put_u8(type_to_wire(spec.group_type));
    out.put_u8(0);
    out.put_u32(spec.group_id);
    encode_buckets(out, &spec.buckets);
    let len = out.len() - start;
    out.patch_u16(start, len);
}

/// Reads one `ofp_group_desc`.
pub(crate) fn decode_group_desc(r: &mut Reader<'_>) -> Result<GroupSpec, Fail> {
    let bad_len = || {
        Fail::new(
            ErrorCode::BadRequest(super::error::BadRequest::BadLen),
            "group desc entry length",
        )
    };
    let len = usize::from(r.u16()?);
    if len < 8 {
        return Err(bad_len());
    }
    let body = r.bytes(len - 2).map_err(|_| bad_len())?;
    let mut b = Reader::new(body);
    let group_type = b.u8()?;
    b.skip(1)?;
    let group_id = b.u32()?;
    let group_type = type_from_wire(group_type)
        .ok_or_else(|| group_fail(GroupModFailed::BadType, format!("group type {group_type}")))?;
    Ok(GroupSpec {
        group_id,
        group_type,
        buckets: decode_buckets(b.rest())?,
    })
}

/// Appends `ofp_bucket`s.
pub(crate) fn encode_buckets(out: &mut Vec<u8>, buckets: &[Bucket]) {
    for bucket in buckets {
        let start = out.len();
        out.put_u16(0);
        out.put_u16(bucket.weight);
        out.put_u32(bucket.watch_port);
        out.put_u32(bucket.watch_group);
        out.put_zeros(4);
        // A bucket has no match: transport set-fields are written by their TCP names.
        encode_actions(out, &bucket.actions, L4Kind::Tcp);
        let len = out.len() - start;
        out.patch_u16(start, len);
    }
}

/// Reads `ofp_bucket`s that fill `bytes` exactly.
pub(crate) fn decode_buckets(bytes: &[u8]) -> Result<Vec<Bucket>, Fail> {
    let mut r = Reader::new(bytes);
    let mut buckets = Vec::new();
    while !r.is_empty() {
        let bad = |why: &str| group_fail(GroupModFailed::BadBucket, why.to_string());
        let len = usize::from(r.u16().map_err(|_| bad("truncated bucket header"))?);
        if len < BUCKET_HEADER_LEN || len % 8 != 0 {
            return Err(bad("bucket length"));
        }
        let body = r
            .bytes(len - 2)
            .map_err(|_| bad("bucket runs past the message"))?;
        let mut b = Reader::new(body);
        let weight = b.u16()?;
        let watch_port = b.u32()?;
        let watch_group = b.u32()?;
        b.skip(4)?;
        let actions = decode_actions(b.rest())?;
        buckets.push(Bucket {
            weight,
            watch_port,
            watch_group,
            actions,
        });
    }
    Ok(buckets)
}
