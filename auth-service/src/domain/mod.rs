//! Validated input types: a handler never holds an unchecked email or password.

mod email;
mod password;
pub mod service_token;

pub use email::Email;
pub use password::{FullName, NewPassword};
pub use service_token::TokenSpec;
