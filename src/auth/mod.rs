//! Authentication: credentials → a verified identity, or a typed refusal.

pub mod jwt;
pub mod keys;
pub mod strict_json;
