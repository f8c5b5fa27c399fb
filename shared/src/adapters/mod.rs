//! Real implementations of the [`crate::ports`]: AWS through the SDK, Jenkins through its REST API.

pub mod aws;
pub mod cfn_response;
pub mod jenkins;
