//! Giving memory back: after a burst (a full sync of a big rule set builds and
//! drops hundreds of MB of transactions), glibc keeps the freed pages mapped
//! unless asked; this asks.
#![allow(unsafe_code)]

/// Returns freed heap memory to the kernel (glibc's `malloc_trim`); a no-op elsewhere.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and shrinks the allocator's own free lists; it takes
    // no pointers and is thread-safe.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}
