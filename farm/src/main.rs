//! `longshore-farm` command line (being wired).
fn main() {}
