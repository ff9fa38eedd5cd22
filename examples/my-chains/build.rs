//! Registers every chain in chains/*.rs (its source text and SHA-256 go into the binary).

fn main() {
    chainlog_build::generate();
}
