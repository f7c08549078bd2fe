//! Validated input.

pub mod profile;
