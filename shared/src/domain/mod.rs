//! Pure decisions: functions from plain data to plain data. Nothing in here talks to AWS or
//! Jenkins, reads the clock or draws random numbers, so every decision can be table- and
//! property-tested and replayed by the policy simulator exactly as it ships.

pub mod custom_resource;
pub mod fleet;
pub mod jenkins;
pub mod labels;
pub mod queue_why;
pub mod recovery;
pub mod render;
pub mod scaling;
