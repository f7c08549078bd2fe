//! Validated input.

pub mod admin_patch;
pub mod business;
pub mod profile;
