//! Cross-service tests: a real auth service and a real main backend in one
//! process, on port 0 with their own databases, talking real HTTP.

mod helpers;

mod admin;
mod auth_checks;
mod business;
mod profile;
mod reconcile;
mod stream;
mod sync;
mod tasks;
mod webapp;
mod webhooks;
