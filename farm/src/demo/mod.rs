//! `make demo` (placeholder while the driver is wired).
pub mod driver;
pub mod trace;
