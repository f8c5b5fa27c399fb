//! AWS adapters over the official SDK clients.

pub mod cloudformation;
pub mod ec2;
pub mod iam;
pub mod network;
pub mod ssm;
