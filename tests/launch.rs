//! See tests/integration.rs.
