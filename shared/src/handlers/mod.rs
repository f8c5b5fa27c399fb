//! One handler per Lambda: `handle(deps, event) -> Result<Output>`. A function's `main.rs` only
//! builds the dependencies once and hands events to its handler.
//!
//! The three handlers arrive with their own issues (config-resolver, queue-scaler, recovery).
//! Until then each function's binary is real (the Lambda runtime, typed config, typed events)
//! and its handler refuses every event with [`HandlerError::NotBuiltYet`], so a deployment of
//! an unfinished function fails loudly instead of pretending to work.

pub mod config_resolver;
pub mod queue_scaler;
pub mod recovery;

use thiserror::Error;

/// Why a handler did not do its job.
#[derive(Debug, Error)]
pub enum HandlerError {
    #[error("{function} does not handle events yet: its handler is built in its own issue")]
    NotBuiltYet { function: &'static str },
}

/// The event shape each function is invoked with, parsed so malformed events fail early.
pub mod events {
    pub use aws_lambda_events::event::cloudformation::CloudFormationCustomResourceRequest;
    pub use aws_lambda_events::event::eventbridge::EventBridgeEvent;
}

/// Refuses an event for a function whose handler is not built yet, after logging what came in.
pub fn not_built_yet(function: &'static str, request_id: &str) -> Result<(), HandlerError> {
    tracing::error!(function, request_id, "event refused: handler not built yet");
    Err(HandlerError::NotBuiltYet { function })
}

impl From<HandlerError> for lambda_runtime::Diagnostic {
    // The error type names the variant so CloudWatch shows what failed, not just "Error".
    fn from(err: HandlerError) -> Self {
        let error_type = match err {
            HandlerError::NotBuiltYet { .. } => "NotBuiltYet",
        };
        lambda_runtime::Diagnostic {
            error_type: error_type.to_string(),
            error_message: err.to_string(),
        }
    }
}
