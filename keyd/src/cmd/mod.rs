//! The commands of the `keyd` binary (`main.rs`): provisioning (init, import, admin
//! issue), serving, and how results and errors are reported. Not part of the library.

pub mod backup;
pub mod provision;
pub mod report;
pub mod root_rekey;
pub mod serve;
