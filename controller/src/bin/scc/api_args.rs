//! How the `scc` CLI reaches the running controller's API: its Unix socket by
//! default, or TCP with a bearer token read from a file.

use anyhow::{Context, Result};
use std::path::PathBuf;

/// Where the CLI reaches the running controller unless told otherwise.
const DEFAULT_API: &str = "unix:/run/scc/api.sock";

/// Where the CLI reaches the running controller's API.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiArgs {
    /// The controller's API: `unix:PATH` (its socket, the inventory's
    /// `api_socket`) or `http://ADDR:PORT` (its `api`, with --token-file).
    #[arg(long, default_value = DEFAULT_API, global = true)]
    pub api: bounded_http::Endpoint,
    /// File holding the bearer token of an API on TCP (mode 0600).
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,
}

impl ApiArgs {
    /// One request and its whole answer.
    pub fn answer(&self, method: &str, target: &str, body: &[u8]) -> Result<bounded_http::Answer> {
        use bounded_http::client;
        let token = match &self.token_file {
            Some(file) => Some(controller::api::access::read_token(file)?),
            None => None,
        };
        let timeout = std::time::Duration::from_secs(60);
        client::blocking(client::request_to(
            &self.api,
            token.as_deref(),
            method,
            target,
            body,
            timeout,
        ))
        .with_context(|| format!("controller API at {} (is `scc run` up?)", self.api))
    }

    /// One request: the status and the JSON body (`null` when not JSON).
    pub fn json(
        &self,
        method: &str,
        target: &str,
        body: &[u8],
    ) -> Result<(u16, serde_json::Value)> {
        let answer = self.answer(method, target, body)?;
        let json = serde_json::from_slice(&answer.body).unwrap_or(serde_json::Value::Null);
        Ok((answer.status, json))
    }
}
