//! Jenkins label expressions (placeholder).
