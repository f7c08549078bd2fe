//! The auth service's API tests: one binary, one module per area. Each test
//! starts the real server on port 0 with its own database: a temp SQLite file
//! by default, a fresh PostgreSQL database when `TEST_DATABASE_URL` is set.

mod helpers;

mod account;
mod admin;
mod authenticator;
mod browser;
mod bursts;
mod errors;
mod events;
mod health;
mod internal;
mod lockout;
mod login;
mod mail;
mod mfa;
mod nats;
mod oauth;
mod passkeys;
mod providers;
mod refresh;
mod register;
mod service_tokens;
mod sessions;
mod tls;
mod tokens;
mod upgrades;
