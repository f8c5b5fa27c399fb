//! The local farm: everything longshore runs against when no AWS account and no Jenkins are
//! at hand.
//!
//! - [`jenkins`]: a stateful Jenkins simulator speaking Jenkins' REST and WebSocket-agent wire
//!   format (queue, computers, nodes, label-aware scheduling, fault injection).
//! - [`moto`]: starts and stops the moto AWS emulator for tests and the demo.
//! - [`aws_proxy`]: a proxy between the SDK and moto with EC2's ClientToken idempotency and
//!   injected AWS faults (throttling, 5xx, no capacity, lost answers).
//! - [`booter`]: "boots" EC2 instances launched into moto by following their user data and
//!   connecting them to their master as inbound agents.
//! - [`front`]: the masters' load balancer, routing by host name as the stack's ALB does.
//! - [`demo`]: the `make demo` driver.
//! - [`simulate`]: the policy simulator of `make bench`.
//! - [`deploy`]: `make deploy-local`, infra/template.yaml deployed into moto.
//! - [`chaos`]: `make chaos`, the seeded fault harness.

pub mod aws_proxy;
pub mod bench_report;
pub mod booter;
pub mod chaos;
pub mod demo;
pub mod deploy;
pub mod events;
pub mod footprint;
pub mod front;
pub mod jenkins;
pub mod lambda;
pub mod moto;
pub mod simulate;
pub mod stack;
