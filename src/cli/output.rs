//! What the CLI prints: aligned tables and key/value blocks for people
//! (coloured only on a terminal, and never with `NO_COLOR` set), JSON for
//! machines, and progress bars on a terminal's stderr only.

use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressStyle};
use kessel::JobStatus;
use serde::Serialize;

use super::error::CliError;

/// Where and how to print.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Out {
    /// Print JSON.
    pub(crate) json: bool,
    /// Colour the human output.
    color: bool,
    /// Draw progress bars.
    progress: bool,
}

impl Out {
    /// Decides from the flags and from what stdout and stderr are.
    pub(crate) fn new(json: bool) -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Out {
            json,
            color: !json && !no_color && std::io::stdout().is_terminal(),
            progress: !json && std::io::stderr().is_terminal(),
        }
    }

    /// Output for tests: no colour, no progress bars.
    #[cfg(test)]
    pub(crate) fn plain(json: bool) -> Self {
        Out {
            json,
            color: false,
            progress: false,
        }
    }

    /// Prints one line of a stream (`tail`) and flushes it; false when
    /// the reader is gone (a closed pipe), so the stream can stop.
    pub(crate) fn line(&self, text: &str) -> Result<bool, CliError> {
        let mut stdout = std::io::stdout().lock();
        match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
            Err(e) => Err(CliError::Output(e.to_string())),
        }
    }

    /// `shown` (an event kind, padded) in the colour of the event kind
    /// `kind`, on a terminal.
    pub(crate) fn kind(&self, kind: &str, shown: &str) -> String {
        let code = match kind {
            "completed" => "32",
            "failed" | "timed-out" | "buried" | "expired" => "31",
            "retrying" => "33",
            "started" => "36",
            "scheduled" => "34",
            "cancelled" => "2",
            _ => "0",
        };
        self.paint(code, shown)
    }

    /// Prints `value` as pretty JSON.
    pub(crate) fn json<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), CliError> {
        let text =
            serde_json::to_string_pretty(value).map_err(|e| CliError::Output(e.to_string()))?;
        self.text(&text)
    }

    /// Prints `text` and a newline. A closed pipe (`kessel list | head`)
    /// is not an error.
    pub(crate) fn text(&self, text: &str) -> Result<(), CliError> {
        let mut stdout = std::io::stdout().lock();
        match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                Err(CliError::Output(e.to_string()))
            }
            _ => Ok(()),
        }
    }

    /// `text` in bold, on a terminal.
    pub(crate) fn bold(&self, text: &str) -> String {
        self.paint("1", text)
    }

    /// A status, in its colour on a terminal.
    pub(crate) fn status(&self, status: JobStatus) -> String {
        let code = match status {
            JobStatus::Scheduled => "34",
            JobStatus::Ready => "0",
            JobStatus::Running => "36",
            JobStatus::Retrying => "33",
            JobStatus::Completed => "32",
            JobStatus::Buried | JobStatus::Expired => "31",
            JobStatus::Cancelled => "2",
        };
        self.paint(code, status.as_str())
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color && code != "0" {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    /// A progress bar over `len` items on stderr, or a hidden one when
    /// stderr is not a terminal or JSON is asked for.
    pub(crate) fn progress(&self, len: u64, what: &'static str) -> ProgressBar {
        if !self.progress || len == 0 {
            return ProgressBar::hidden();
        }
        // Cleared when dropped too, so an error ends in its one line.
        let bar = ProgressBar::new(len).with_finish(indicatif::ProgressFinish::AndClear);
        if let Ok(style) =
            ProgressStyle::with_template("{msg} [{bar:30}] {human_pos}/{human_len} ({eta} left)")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(what);
        bar
    }
}

/// One cell of a [`Table`]: the text shown, which may carry colour codes,
/// and its width without them.
#[derive(Debug, Clone)]
pub(crate) struct Cell {
    shown: String,
    width: usize,
    right: bool,
}

impl Cell {
    /// A left-aligned cell.
    pub(crate) fn left(plain: impl Into<String>) -> Self {
        let plain = plain.into();
        Cell {
            width: plain.chars().count(),
            shown: plain,
            right: false,
        }
    }

    /// A right-aligned cell (numbers).
    pub(crate) fn right(plain: impl ToString) -> Self {
        Cell {
            right: true,
            ..Cell::left(plain.to_string())
        }
    }

    /// A left-aligned cell shown as `shown` (the same text, coloured).
    pub(crate) fn styled(plain: &str, shown: String) -> Self {
        Cell {
            width: plain.chars().count(),
            shown,
            right: false,
        }
    }
}

/// A table of aligned columns, two spaces apart, with a header row.
#[derive(Debug, Default)]
pub(crate) struct Table {
    rows: Vec<Vec<Cell>>,
}

impl Table {
    /// A table with these column headers (bold on a terminal; a header
    /// is right-aligned when its column holds numbers: see `numeric`).
    pub(crate) fn new(out: &Out, headers: &[&str], numeric: &[bool]) -> Self {
        let header = headers
            .iter()
            .zip(numeric.iter().chain(std::iter::repeat(&false)))
            .map(|(h, &right)| Cell {
                width: h.chars().count(),
                shown: out.bold(h),
                right,
            })
            .collect();
        Table { rows: vec![header] }
    }

    /// Adds a row.
    pub(crate) fn row(&mut self, cells: Vec<Cell>) {
        self.rows.push(cells);
    }

    /// The table as lines, without trailing spaces.
    pub(crate) fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|cell| cell.width)
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut lines = Vec::with_capacity(self.rows.len());
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                let pad = " ".repeat(widths[c].saturating_sub(cell.width));
                if c > 0 {
                    line.push_str("  ");
                }
                if cell.right {
                    line.push_str(&pad);
                    line.push_str(&cell.shown);
                } else {
                    line.push_str(&cell.shown);
                    line.push_str(&pad);
                }
            }
            lines.push(line.trim_end().to_owned());
        }
        lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_numbers_sit_right() {
        let out = Out {
            json: false,
            color: false,
            progress: false,
        };
        let mut table = Table::new(&out, &["TASK", "COUNT"], &[false, true]);
        table.row(vec![Cell::left("email"), Cell::right(7)]);
        table.row(vec![Cell::left("report"), Cell::right(1200)]);
        assert_eq!(
            table.render(),
            "TASK    COUNT\nemail       7\nreport   1200"
        );
    }

    #[test]
    fn colour_codes_do_not_count_towards_width() {
        let out = Out {
            json: false,
            color: true,
            progress: false,
        };
        let mut table = Table::new(&out, &["S", "N"], &[false, true]);
        table.row(vec![
            Cell::styled("buried", out.status(JobStatus::Buried)),
            Cell::right(1),
        ]);
        let rendered = table.render();
        let last = rendered.lines().last().unwrap();
        assert_eq!(last, "\x1b[31mburied\x1b[0m  1");
    }
}
