//! jenkins (placeholder, filled in by its own change).
