//! Job arguments to stored bytes and back: JSON that refuses values it cannot
//! hold faithfully, stored by position and named again for the untyped API.

pub(crate) mod encode;
pub(crate) mod positional;
