//! `kessel`: the operator's command line for a kessel queue on SQLite or
//! PostgreSQL (feature `cli`). See `docs/cli.md`.
#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]
#![forbid(unsafe_code)]

#[path = "../cli/mod.rs"]
mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
