//! Thin QEMU driver over QMP for live migration (not implemented yet; see issue 10).
#![forbid(unsafe_code)]
