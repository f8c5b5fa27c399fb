//! `make demo` (being wired).
pub mod driver;
pub mod trace;
