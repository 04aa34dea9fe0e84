//! One module per verb.
pub mod capabilities;
