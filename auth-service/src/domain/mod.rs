//! Validated input types: a handler never holds an unchecked email or
//! password. A broken rule is `service_kit::invalid::Invalid`, which knows
//! no HTTP (the error module answers it with 422 and its code).

mod email;
mod password;
pub mod service_token;

pub use email::Email;
pub use password::{FullName, NewPassword};
pub use service_token::TokenSpec;
