//! AWS adapters over the official SDK clients.

pub mod ec2;
pub mod ssm;
