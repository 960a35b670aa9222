//! Reusable arrays of the C structs sendmmsg/recvmmsg take. They hold raw
//! pointers, which makes them `!Send`; this wrapper restores `Send`.

use std::ops::{Deref, DerefMut};

pub struct Scratch<T>(Vec<T>);

impl<T> Scratch<T> {
    pub fn new() -> Scratch<T> {
        Scratch(Vec::new())
    }
}

impl<T> Default for Scratch<T> {
    fn default() -> Self {
        Scratch::new()
    }
}

impl<T> Deref for Scratch<T> {
    type Target = Vec<T>;
    fn deref(&self) -> &Vec<T> {
        &self.0
    }
}

impl<T> DerefMut for Scratch<T> {
    fn deref_mut(&mut self) -> &mut Vec<T> {
        &mut self.0
    }
}

/// An all-zero C struct: null pointers and zero lengths.
pub fn zeroed_mmsghdr() -> libc::mmsghdr {
    // SAFETY: mmsghdr is plain C data for which all-zero bytes are valid
    // (null pointers, zero lengths and flags).
    unsafe { std::mem::zeroed() }
}

// SAFETY: the pointers in these structs are written and dereferenced only
// inside one `&mut self` call of the endpoint that owns them, and point at
// memory that outlives that call (the endpoint's own buffers or the caller's
// borrowed batch). Between calls they are stale and never read, so moving
// the arrays to another thread moves no access with them.
unsafe impl Send for Scratch<libc::iovec> {}
// SAFETY: as for `Scratch<libc::iovec>` above.
unsafe impl Send for Scratch<libc::mmsghdr> {}
