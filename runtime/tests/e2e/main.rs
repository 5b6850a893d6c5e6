//! The end-to-end tests: one binary, so that `cargo test` runs them side by side (a test
//! waiting out a timeout overlaps another's boot) and the VMs a module shares are booted once.
//! Each module is the file of one subject; a test's path (`e2e_honest::…`) is what the docs
//! cite. The arm64 guests' tests (`e2e_arch`) and the custom kernel's (`e2e_custom_kernel`)
//! are their own binaries, run as their own CI steps (README).

#[path = "../common/mod.rs"]
mod common;

mod doc_examples;
mod e2e_abi;
mod e2e_agent_fds;
mod e2e_bad_input;
mod e2e_cache;
mod e2e_ci_docs;
mod e2e_fixtures;
mod e2e_gen;
mod e2e_honest;
mod e2e_init;
mod e2e_kernels;
mod e2e_lua_cli;
mod e2e_parallel;
mod e2e_record;
mod e2e_reports;
mod e2e_robustness;
mod e2e_schema;
mod e2e_shell;
mod e2e_signals;
mod e2e_snapshot;
mod e2e_specs;
mod e2e_transports;
