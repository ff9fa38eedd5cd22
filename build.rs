//! chainlog's own example chains are registered exactly as a user's crate registers its own:
//! through `chainlog-build`. The toolchain variables are the library's (the provenance an
//! artifact records).

fn main() {
    chainlog_build::generate();
    chainlog_build::emit_toolchain();
}
