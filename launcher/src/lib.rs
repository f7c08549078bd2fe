//! Development launcher, benchmark driver and the fault-injection suite's
//! process supervision.
//!
//! - `dev`: secrets generated once and both services run in one process
//!   (`cargo run -p launcher`).
//! - `system`: the real service binaries as child processes (ports, env,
//!   logs, kill -9, SIGSTOP/SIGCONT, RSS), used by `launcher bench` and by
//!   the system tests (`tests/system/`).

pub mod dev;
pub mod system;
