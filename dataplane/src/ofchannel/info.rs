//! What the switch says about itself in features and desc replies.

/// What the switch says about itself in features and desc replies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatapathInfo {
    /// Datapath id.
    pub datapath_id: u64,
    /// Host name (the `dp_desc`).
    pub name: String,
    /// Number of tables.
    pub n_tables: u8,
}
