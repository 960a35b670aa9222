//! Transparent huge pages for the table. Every lookup touches a random bucket and a random item,
//! so with 4 KiB pages nearly every access also misses the TLB (72 MB of table = 18,000 pages)
//! and the page walks cap how many misses can be in flight. 2 MiB pages cover the table with a
//! few dozen TLB entries. Advice only: where the kernel declines, nothing changes but speed.

/// Asks the kernel to back `[ptr, ptr + bytes)` with huge pages. Call before first touching it.
pub(crate) fn advise<T>(ptr: *const T, bytes: usize) {
    #[cfg(all(target_os = "linux", not(loom)))]
    {
        const PAGE: usize = 4096;
        let start = (ptr as usize).next_multiple_of(PAGE);
        let end = (ptr as usize + bytes) & !(PAGE - 1);
        if end > start {
            // SAFETY: madvise only sets a paging hint on whole pages inside an allocation we own;
            // MADV_HUGEPAGE never changes the contents or validity of the memory.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
        }
    }
    #[cfg(not(all(target_os = "linux", not(loom))))]
    let _ = (ptr, bytes);
}
