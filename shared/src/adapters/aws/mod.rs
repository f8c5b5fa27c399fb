//! AWS adapters over the official SDK clients.

pub mod cloudformation;
pub mod ec2;
pub mod ecs;
pub mod iam;
pub mod lease;
pub mod network;
pub mod secrets;
pub mod ssm;
