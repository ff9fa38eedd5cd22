//! The `chainlog` binary: this repository's example chains (`chains/`, registered by
//! `chainlog-build` exactly as in a user's crate) plus every chainlog command.

// mimalloc, not glibc's malloc: in a batch at 1,024 rows in flight, malloc/free were ~22 % of
// the process's CPU (perf); the mock (`chainlog mock`) runs in this binary too.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

chainlog::main!();
