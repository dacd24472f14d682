//! End-to-end tests: the real `keyctl` and `hsm-sim` binaries, and the keyd library,
//! against real SoftHSM2 tokens, each test with its own token.

#![allow(clippy::unwrap_used)]

mod api;
mod audit;
mod backup;
mod ceremony;
mod chain;
mod cli;
mod client;
mod cluster;
mod crash;
mod custodians;
mod enroll;
mod etcd;
mod hardening;
mod helpers;
mod hsm;
mod hsm_sim;
mod lifecycle;
mod limits;
mod logs;
mod nodes;
mod operator;
mod policy;
mod rebuild;
mod recover;
mod replicas;
mod root_rekey;
mod service;
mod store_integrity;
mod suites;
mod tools;
mod transit;
mod transit_clients;
mod transit_replay;
mod trust;
mod walkthrough;
