//! The one way `scc`, `scd` and `scvm` log: to standard error, filtered by a
//! per-program environment variable, coloured only for a person at a terminal.

use std::io::IsTerminal;

/// Installs the global subscriber: `env_var` (e.g. `SCD_LOG=debug`, any
/// `tracing` filter) or else `default_filter` decides what is written.
pub fn init_stderr_logging(env_var: &str, default_filter: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env(env_var)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal (https://no-color.org):
        // none in a log file or a journal.
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .init();
}
