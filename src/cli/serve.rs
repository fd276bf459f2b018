//! `kessel serve`: the HTTP API (`kessel::web`'s standalone server, with
//! whatever it serves) on a store, from a process that defines no task
//! and runs no job. It stops on Ctrl-C or SIGTERM, storing what it holds.

use kessel::web::{Api, Auth};
use serde_json::json;

use super::args::ServeArgs;
use super::connect::{self, Connection};
use super::error::CliError;
use super::output::Out;

fn given(token: Option<&str>) -> Option<String> {
    token
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

/// Who may use the API: the tokens given, or anyone with `--no-auth`.
pub(crate) fn auth(
    admin: Option<&str>,
    read_only: Option<&str>,
    no_auth: bool,
) -> Result<Auth, CliError> {
    match (given(admin), given(read_only)) {
        (None, None) if no_auth => Ok(Auth::none()),
        (None, None) => Err(CliError::NoAuth),
        // Tokens given win over --no-auth: never open by mistake.
        (admin, read_only) => {
            let mut tokens = Auth::tokens();
            if let Some(t) = admin {
                tokens = tokens.admin(t);
            }
            if let Some(t) = read_only {
                tokens = tokens.read_only(t);
            }
            Ok(tokens.into())
        }
    }
}

/// `kessel serve [--bind ADDR] [--token T] [--read-only-token T] [--no-auth]`.
pub(crate) async fn run(
    target: &Connection<'_>,
    out: &Out,
    args: ServeArgs,
) -> Result<(), CliError> {
    if target.api_url()?.is_some() {
        return Err(CliError::NeedsDatabase("serve"));
    }
    let auth = auth(target.token, args.read_only_token.as_deref(), args.no_auth)?;
    let opened = connect::open(target.database_url, target.schema, false).await?;
    let queue = match opened.queue().await {
        Ok(queue) => queue,
        Err(e) => {
            let _ = opened.close(None).await;
            return Err(e);
        }
    };
    let server = match Api::new(queue.clone(), auth).server(args.bind.as_str()) {
        Ok(server) => server,
        Err(source) => {
            let _ = opened.close(Some(queue)).await;
            return Err(CliError::Bind {
                addr: args.bind,
                source,
            });
        }
    };
    let shown = if out.json {
        json!({"listening": args.bind, "location": opened.location}).to_string()
    } else {
        format!(
            "kessel HTTP API on http://{} for {} (Ctrl-C stops it)",
            args.bind, opened.location
        )
    };
    out.line(&shown)?;
    let served = server.await;
    let closed = opened.close(Some(queue)).await;
    served.map_err(|source| CliError::Bind {
        addr: args.bind,
        source,
    })?;
    closed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serving_needs_a_token_or_no_auth_said_out_loud() {
        assert!(matches!(auth(None, None, false), Err(CliError::NoAuth)));
        assert!(matches!(
            auth(Some(" "), Some(""), false),
            Err(CliError::NoAuth)
        ));
        assert!(auth(None, None, true).is_ok());
        assert!(auth(Some("t"), None, false).is_ok());
        assert!(auth(None, Some("r"), true).is_ok());
    }
}
