//! The supercloud controller: the NetKAT policy compiler and, on top of it, the
//! daemon that programs every host's switch.
#![forbid(unsafe_code)]
pub mod netkat;
