//! `kessel create`: one job, or one per line of a file.

use std::io::Read;

use serde_json::json;

use crate::cli::args::CreateArgs;
use crate::cli::backend::{Backend, CreateOptions, Unique};
use crate::cli::error::CliError;
use crate::cli::output::Out;
use crate::cli::parse;

/// The payloads `--from-file` names, one per non-empty line; a line that
/// is not JSON is an error naming it, before any job is created.
fn read_lines(path: &std::path::Path) -> Result<Vec<Box<serde_json::value::RawValue>>, CliError> {
    let (name, text) = if path.as_os_str() == "-" {
        ("stdin".to_owned(), read_stdin()?)
    } else {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| CliError::Read {
            what: name.clone(),
            source,
        })?;
        (name, text)
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| parse::payload(l, || format!("on line {} of {name}", i + 1)))
        .collect()
}

fn read_stdin() -> Result<String, CliError> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|source| CliError::Read {
            what: "stdin".into(),
            source,
        })?;
    Ok(text)
}

/// `kessel create TASK [PAYLOAD]` and `kessel create TASK --from-file FILE`.
pub(crate) async fn create(backend: &Backend, out: &Out, args: CreateArgs) -> Result<(), CliError> {
    let options = CreateOptions {
        delay: args
            .delay
            .as_deref()
            .map(|d| parse::duration("--delay", d))
            .transpose()?,
        run_at: args
            .run_at
            .as_deref()
            .map(|t| parse::time("--run-at", t))
            .transpose()?,
        expires_in: args
            .expires_in
            .as_deref()
            .map(|d| parse::duration("--expires-in", d))
            .transpose()?,
        priority: args.priority,
        reference: args.reference,
        max_attempts: args.max_attempts,
        group: args.group,
    };
    let payloads = match (&args.from, args.payload.as_deref()) {
        (Some(path), _) => read_lines(path)?,
        (None, Some("-")) => vec![parse::payload(&read_stdin()?, || "(stdin)".into())?],
        (None, Some(text)) => vec![parse::payload(text, || "(argument)".into())?],
        (None, None) => vec![parse::payload("null", String::new)?],
    };
    let task = args.task;
    let unique = match (args.unique, args.unique_by_payload) {
        (Some(key), _) => Some(Unique::Key(key)),
        (None, true) => Some(Unique::ByPayload),
        (None, false) => None,
    };
    if let (Some(unique), [payload]) = (unique, payloads.as_slice()) {
        let (id, duplicate) = backend
            .create_unique(&task, payload, &options, unique)
            .await?;
        if out.json {
            return out.json(&json!({"id": id, "task": task, "duplicate": duplicate}));
        }
        if duplicate {
            eprintln!("note: a live job holds this unique key; nothing was created");
        }
        return out.text(&id.to_string());
    }
    let bar = if args.from.is_some() {
        out.progress(payloads.len() as u64, "creating")
    } else {
        indicatif::ProgressBar::hidden()
    };
    let ids = backend
        .create_many(&task, &payloads, &options, |n| bar.inc(n as u64))
        .await;
    bar.finish_and_clear();
    let ids = ids?;
    match (args.from.is_some(), out.json) {
        (false, true) => out.json(&json!({"id": ids.first(), "task": task})),
        (false, false) => out.text(&ids.first().map(ToString::to_string).unwrap_or_default()),
        (true, true) => out.json(&json!({"task": task, "created": ids.len(), "ids": ids})),
        (true, false) => out.text(&format!("created {} jobs of `{task}`", ids.len())),
    }
}
