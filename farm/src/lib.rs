//! The local farm: everything longshore runs against when no AWS account and no Jenkins are
//! at hand.
//!
//! - [`jenkins`]: a stateful Jenkins simulator speaking Jenkins' REST and WebSocket-agent wire
//!   format (queue, computers, nodes, label-aware scheduling, fault injection).
//! - [`moto`]: starts and stops the moto AWS emulator for tests and the demo.
//! - [`booter`]: "boots" EC2 instances launched into moto by following their user data and
//!   connecting them to their master as inbound agents.
//! - [`demo`]: the `make demo` driver.
//! - [`deploy`]: `make deploy-local`, infra/template.yaml deployed into moto.

pub mod booter;
pub mod demo;
pub mod deploy;
pub mod jenkins;
pub mod lambda;
pub mod moto;
pub mod stack;
