//! OpenFlow 1.3 error messages (`OFPT_ERROR`): the error types and codes as enums.
//!
//! This module owns the numbering of `ofp_error_type` and the per-type code enums the
//! switch and controller use (hello-failed, bad-request, bad-action, bad-instruction,
//! bad-match, flow-mod-failed, group-mod-failed, switch-config-failed, role-request-failed). Every
//! `(type, code)` pair read from a wire maps to a value that writes back the same pair
//! (`Other`/unknown variants keep the numbers). It never decides *when* to send an error.

use super::buf::{Put, Reader, Short};

/// Defines a wire enum with named values and an `Other` catch-all that keeps the number.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident: $ty:ty { $($(#[$vmeta:meta])* $variant:ident = $val:expr),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
            /// A value this codec has no name for.
            Other($ty),
        }
        impl $name {
            /// The number on the wire.
            pub fn to_wire(self) -> $ty {
                match self {
                    $($name::$variant => $val,)*
                    $name::Other(v) => v,
                }
            }
            /// The value for a number read from the wire.
            pub fn from_wire(v: $ty) -> $name {
                match v {
                    $($val => $name::$variant,)*
                    other => $name::Other(other),
                }
            }
        }
    };
}
pub(crate) use wire_enum;

wire_enum! {
    /// `OFPHFC_*`.
    HelloFailed: u16 { /** No compatible version. */ Incompatible = 0, /** Permissions error. */ Eperm = 1 }
}

wire_enum! {
    /// `OFPBRC_*`.
    BadRequest: u16 {
        /** Header version not supported. */ BadVersion = 0,
        /** Message type not supported. */ BadType = 1,
        /** Multipart type not supported. */ BadMultipart = 2,
        /** Experimenter id not supported. */ BadExperimenter = 3,
        /** Experimenter type not supported. */ BadExpType = 4,
        /** Permissions error. */ Eperm = 5,
        /** Wrong length for the type. */ BadLen = 6,
        /** Buffer already used. */ BufferEmpty = 7,
        /** Buffer does not exist. */ BufferUnknown = 8,
        /** Bad table id. */ BadTableId = 9,
        /** Denied because the controller is a slave. */ IsSlave = 10,
        /** Invalid port. */ BadPort = 11,
        /** Invalid packet in packet-out. */ BadPacket = 12,
        /** Multipart reply overflowed its buffer. */ MultipartBufferOverflow = 13,
    }
}

wire_enum! {
    /// `OFPBAC_*`.
    BadAction: u16 {
        /** Unknown or unsupported action type. */ BadType = 0,
        /** Length problem in actions. */ BadLen = 1,
        /** Unknown experimenter id. */ BadExperimenter = 2,
        /** Unknown action for experimenter. */ BadExpType = 3,
        /** Problem validating the output port. */ BadOutPort = 4,
        /** Bad action argument. */ BadArgument = 5,
        /** Permissions error. */ Eperm = 6,
        /** Too many actions. */ TooMany = 7,
        /** Problem validating the queue. */ BadQueue = 8,
        /** Invalid group id. */ BadOutGroup = 9,
        /** Action cannot apply to this match. */ MatchInconsistent = 10,
        /** Action order unsupported. */ UnsupportedOrder = 11,
        /** Bad tag or encapsulation. */ BadTag = 12,
        /** Unsupported set-field type. */ BadSetType = 13,
        /** Length problem in set-field. */ BadSetLen = 14,
        /** Bad set-field argument. */ BadSetArgument = 15,
    }
}

wire_enum! {
    /// `OFPBIC_*`.
    BadInstruction: u16 {
        /** Unknown instruction. */ UnknownInst = 0,
        /** Switch or table does not support the instruction. */ UnsupInst = 1,
        /** Invalid table id. */ BadTableId = 2,
        /** Metadata value unsupported. */ UnsupMetadata = 3,
        /** Metadata mask unsupported. */ UnsupMetadataMask = 4,
        /** Unknown experimenter id. */ BadExperimenter = 5,
        /** Unknown instruction for experimenter. */ BadExpType = 6,
        /** Length problem in instructions. */ BadLen = 7,
        /** Permissions error. */ Eperm = 8,
    }
}

wire_enum! {
    /// `OFPBMC_*`.
    BadMatch: u16 {
        /** Unsupported match type. */ BadType = 0,
        /** Length problem in match. */ BadLen = 1,
        /** Match uses an unsupported tag. */ BadTag = 2,
        /** Unsupported datalink address mask. */ BadDlAddrMask = 3,
        /** Unsupported network address mask. */ BadNwAddrMask = 4,
        /** Value has bits outside its mask, or unsupported wildcards. */ BadWildcards = 5,
        /** Unsupported field type. */ BadField = 6,
        /** Unsupported value in a match field. */ BadValue = 7,
        /** Unsupported mask. */ BadMask = 8,
        /** A prerequisite was not met. */ BadPrereq = 9,
        /** A field type was duplicated. */ DupField = 10,
        /** Permissions error. */ Eperm = 11,
    }
}

wire_enum! {
    /// `OFPFMFC_*`.
    FlowModFailed: u16 {
        /** Unspecified error. */ Unknown = 0,
        /** Table is full. */ TableFull = 1,
        /** Table does not exist. */ BadTableId = 2,
        /** Overlap with check-overlap set. */ Overlap = 3,
        /** Permissions error. */ Eperm = 4,
        /** Unsupported timeouts. */ BadTimeout = 5,
        /** Unsupported or unknown command. */ BadCommand = 6,
        /** Unsupported or unknown flags. */ BadFlags = 7,
    }
}

wire_enum! {
    /// `OFPGMFC_*`.
    GroupModFailed: u16 {
        /** Group not added because it already exists. */ GroupExists = 0,
        /** Group not added: invalid id or properties. */ InvalidGroup = 1,
        /** Weights are not supported. */ WeightUnsupported = 2,
        /** The group table is full. */ OutOfGroups = 3,
        /** Too many buckets. */ OutOfBuckets = 4,
        /** A bucket may not forward to a group. */ ChainingUnsupported = 5,
        /** Watch ports or groups are not supported. */ WatchUnsupported = 6,
        /** The group would form a loop. */ Loop = 7,
        /** Modify or delete of a group that does not exist. */ UnknownGroup = 8,
        /** The group is chained from another group. */ ChainedGroup = 9,
        /** Unsupported or unknown group type. */ BadType = 10,
        /** Unsupported or unknown command. */ BadCommand = 11,
        /** Error in a bucket. */ BadBucket = 12,
        /** Error in a watch port or group. */ BadWatch = 13,
        /** Permissions error. */ Eperm = 14,
    }
}

wire_enum! {
    /// `OFPSCFC_*`.
    SwitchConfigFailed: u16 { /** Bad flags. */ BadFlags = 0, /** Bad miss_send_len. */ BadLen = 1, /** Permissions error. */ Eperm = 2 }
}

wire_enum! {
    /// `OFPRRFC_*`.
    RoleRequestFailed: u16 { /** Stale generation id. */ Stale = 0, /** Role change unsupported. */ Unsup = 1, /** Invalid role. */ BadRole = 2 }
}

/// An OpenFlow error type with its code.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ErrorCode {
    /// `OFPET_HELLO_FAILED` (0).
    HelloFailed(HelloFailed),
    /// `OFPET_BAD_REQUEST` (1).
    BadRequest(BadRequest),
    /// `OFPET_BAD_ACTION` (2).
    BadAction(BadAction),
    /// `OFPET_BAD_INSTRUCTION` (3).
    BadInstruction(BadInstruction),
    /// `OFPET_BAD_MATCH` (4).
    BadMatch(BadMatch),
    /// `OFPET_FLOW_MOD_FAILED` (5).
    FlowModFailed(FlowModFailed),
    /// `OFPET_GROUP_MOD_FAILED` (6).
    GroupModFailed(GroupModFailed),
    /// `OFPET_SWITCH_CONFIG_FAILED` (10).
    SwitchConfigFailed(SwitchConfigFailed),
    /// `OFPET_ROLE_REQUEST_FAILED` (11).
    RoleRequestFailed(RoleRequestFailed),
    /// Any other type (port-mod, meter-mod... and experimenter errors,
    /// whose `code` is the `exp_type`).
    Other {
        /// `ofp_error_type`.
        typ: u16,
        /// The code within that type.
        code: u16,
    },
}

impl ErrorCode {
    /// `(type, code)` as on the wire.
    pub fn to_wire(self) -> (u16, u16) {
        match self {
            ErrorCode::HelloFailed(c) => (0, c.to_wire()),
            ErrorCode::BadRequest(c) => (1, c.to_wire()),
            ErrorCode::BadAction(c) => (2, c.to_wire()),
            ErrorCode::BadInstruction(c) => (3, c.to_wire()),
            ErrorCode::BadMatch(c) => (4, c.to_wire()),
            ErrorCode::FlowModFailed(c) => (5, c.to_wire()),
            ErrorCode::GroupModFailed(c) => (6, c.to_wire()),
            ErrorCode::SwitchConfigFailed(c) => (10, c.to_wire()),
            ErrorCode::RoleRequestFailed(c) => (11, c.to_wire()),
            ErrorCode::Other { typ, code } => (typ, code),
        }
    }

    /// The value for a `(type, code)` pair read from the wire.
    pub fn from_wire(typ: u16, code: u16) -> ErrorCode {
        match typ {
            0 => ErrorCode::HelloFailed(HelloFailed::from_wire(code)),
            1 => ErrorCode::BadRequest(BadRequest::from_wire(code)),
            2 => ErrorCode::BadAction(BadAction::from_wire(code)),
            3 => ErrorCode::BadInstruction(BadInstruction::from_wire(code)),
            4 => ErrorCode::BadMatch(BadMatch::from_wire(code)),
            5 => ErrorCode::FlowModFailed(FlowModFailed::from_wire(code)),
            6 => ErrorCode::GroupModFailed(GroupModFailed::from_wire(code)),
            10 => ErrorCode::SwitchConfigFailed(SwitchConfigFailed::from_wire(code)),
            11 => ErrorCode::RoleRequestFailed(RoleRequestFailed::from_wire(code)),
            typ => ErrorCode::Other { typ, code },
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ErrorCode::HelloFailed(c) => write!(f, "hello-failed/{c:?}"),
            ErrorCode::BadRequest(c) => write!(f, "bad-request/{c:?}"),
            ErrorCode::BadAction(c) => write!(f, "bad-action/{c:?}"),
            ErrorCode::BadInstruction(c) => write!(f, "bad-instruction/{c:?}"),
            ErrorCode::BadMatch(c) => write!(f, "bad-match/{c:?}"),
            ErrorCode::FlowModFailed(c) => write!(f, "flow-mod-failed/{c:?}"),
            ErrorCode::GroupModFailed(c) => write!(f, "group-mod-failed/{c:?}"),
            ErrorCode::SwitchConfigFailed(c) => write!(f, "switch-config-failed/{c:?}"),
            ErrorCode::RoleRequestFailed(c) => write!(f, "role-request-failed/{c:?}"),
            ErrorCode::Other { typ, code } => write!(f, "error type {typ} code {code}"),
        }
    }
}

/// An `OFPT_ERROR` message.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct ErrorMsg {
    /// Type and code.
    pub code: ErrorCode,
    /// Usually the first 64 bytes of the offending message (or an ASCII text for
    /// hello-failed).
    pub data: Vec<u8>,
}

impl ErrorMsg {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<ErrorMsg, Short> {
        let typ = r.u16()?;
        let code = r.u16()?;
        Ok(ErrorMsg {
            code: ErrorCode::from_wire(typ, code),
            data: r.rest().to_vec(),
        })
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let (typ, code) = self.code.to_wire();
        out.put_u16(typ);
        out.put_u16(code);
        out.extend_from_slice(&self.data);
    }
}
