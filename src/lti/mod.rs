//! The LTI 1.1 protocol, in plain Rust with no web framework types.

pub mod diagnosis;
pub mod inspect;
pub mod launch;
pub mod oauth;
pub mod params;
pub mod roles;
