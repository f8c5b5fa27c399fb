//! One handler per Lambda: `handle(deps, event) -> Result<Output>`. A function's `main.rs` only
//! builds the dependencies once (SDK clients, settings from the environment) and hands events to
//! its handler; everything a handler decides comes from the pure functions in
//! [`crate::domain`], everything it does goes through the ports in [`crate::ports`].

pub mod config_resolver;
pub mod queue_scaler;
pub mod recovery;

/// The event shape each function is invoked with, parsed so malformed events fail early.
pub mod events {
    pub use aws_lambda_events::event::cloudformation::CloudFormationCustomResourceRequest;
    pub use aws_lambda_events::event::eventbridge::EventBridgeEvent;
}
