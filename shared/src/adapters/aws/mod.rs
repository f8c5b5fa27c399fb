//! AWS adapters over the official SDK clients.

pub mod autoscaling;
pub mod cloudformation;
pub mod ec2;
pub mod ecs;
pub mod iam;
pub mod launches;
pub mod lease;
pub mod network;
pub mod secrets;
pub mod sns;
pub mod ssm;
pub mod state;
