//! Placeholder library target so the integration test crate is a package; the tests live in `main.rs`.
