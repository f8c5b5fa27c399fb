//! longshore: the library behind the three Lambdas and the local farm.
//!
//! Map of the crate:
//! - [`domain`]: pure decisions over plain data (no I/O, no clock, no randomness).
//! - [`ports`]: the small traits the handlers need from AWS and Jenkins.
//! - [`adapters`]: real implementations of the ports (AWS SDK, Jenkins REST) and dry-run ones.
//! - [`config`], [`error`], [`telemetry`]: typed settings, error enums, JSON logs and EMF metrics.

pub mod adapters;
pub mod config;
pub mod domain;
pub mod error;
pub mod handlers;
pub mod ports;
pub mod telemetry;
