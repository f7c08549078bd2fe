//! Validated input.

pub mod admin_patch;
pub mod profile;
