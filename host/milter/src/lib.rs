//! milter
pub mod codec;
