//! Result rows, goals, ratios, the printed table and the JSON file.

use serde::{Deserialize, Serialize};

use crate::systems::System;

/// Whether more of a metric is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    Higher,
    Lower,
}

/// A goal from the benchmark issue, and whether the value meets it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Goal {
    pub text: String,
    /// `None` when there is no value to judge.
    pub met: Option<bool>,
    /// For goals with a first bar below them: whether the bar is met.
    pub bar_met: Option<bool>,
}

impl Goal {
    pub fn verdict(&self) -> &'static str {
        match (self.met, self.bar_met) {
            (None, _) => "not measured",
            (Some(true), _) => "✅ met",
            (Some(false), Some(true)) => "⚠️ bar met, goal missed",
            (Some(false), _) => "❌ missed",
        }
    }
}

/// One measured (or failed, or unavailable) number.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub workload: String,
    pub params: String,
    pub system: String,
    pub metric: String,
    pub unit: String,
    pub better: Better,
    pub value: Option<f64>,
    pub goal: Option<Goal>,
    pub note: Option<String>,
}

/// kessel's value over a peer's, for the same workload, params and metric.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ratio {
    pub workload: String,
    pub params: String,
    pub metric: String,
    pub kessel: String,
    pub peer: String,
    /// kessel ÷ peer.
    pub ratio: f64,
    pub better: Better,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Report {
    pub mode: String,
    pub rows: Vec<Row>,
    pub ratios: Vec<Ratio>,
}

impl Report {
    pub fn push(&mut self, row: Row) {
        eprintln!("  {}", line(&row));
        self.rows.push(row);
    }

    /// Pairs every kessel row with the same row of each peer.
    pub fn compute_ratios(&mut self) {
        let pairs = [
            (System::Kessel, System::Apalis),
            (System::Kessel, System::Baseline),
            (System::KesselWorkerThread, System::Apalis),
            (System::KesselWorkerThread, System::Baseline),
            // What the hand-off to a worker thread costs, in one run.
            (System::KesselWorkerThread, System::Kessel),
            (System::KesselSqlite, System::ApalisSqlite),
            (System::KesselPostgres, System::ApalisPostgres),
            (System::KesselPostgres, System::Awa),
        ];
        let mut ratios = Vec::new();
        for (k, p) in pairs {
            // Rows that are ratios already (unit "×") pair with nothing.
            for kr in self
                .rows
                .iter()
                .filter(|r| r.system == k.name() && r.unit != "×")
            {
                let Some(kv) = kr.value else { continue };
                // Latency runs offer each system its own rate (half its
                // capacity), so their params differ: pair them by workload.
                let same_params =
                    |r: &Row| r.params == kr.params || kr.workload.contains("latency");
                let peer = self.rows.iter().find(|r| {
                    r.system == p.name()
                        && r.workload == kr.workload
                        && same_params(r)
                        && r.metric == kr.metric
                });
                if let Some(pv) = peer.and_then(|r| r.value).filter(|v| *v > 0.0) {
                    ratios.push(Ratio {
                        workload: kr.workload.clone(),
                        params: kr.params.clone(),
                        metric: kr.metric.clone(),
                        kessel: k.name().to_owned(),
                        peer: p.name().to_owned(),
                        ratio: kv / pv,
                        better: kr.better,
                    });
                }
            }
        }
        self.ratios = ratios;
    }

    /// The table, as Markdown.
    pub fn table(&self) -> String {
        let mut out = String::new();
        out.push_str("| workload | params | system | metric | value | goal | note |\n");
        out.push_str("|---|---|---|---|---:|---|---|\n");
        for r in &self.rows {
            let value = r
                .value
                .map(|v| format!("{} {}", human(v), r.unit))
                .unwrap_or_else(|| "—".into());
            let goal = r
                .goal
                .as_ref()
                .map(|g| format!("{} {}", g.text, g.verdict()))
                .unwrap_or_default();
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} |\n",
                r.workload,
                r.params,
                r.system,
                r.metric,
                value,
                goal,
                r.note.as_deref().unwrap_or("").replace('|', "/")
            ));
        }
        if !self.ratios.is_empty() {
            out.push_str("\n| workload | params | metric | ratio | value | better when |\n");
            out.push_str("|---|---|---|---|---:|---|\n");
            for r in &self.ratios {
                let ratio = if r.ratio >= 0.01 {
                    format!("{:.2}×", r.ratio)
                } else {
                    format!("1/{:.0}×", 1.0 / r.ratio)
                };
                out.push_str(&format!(
                    "| {} | {} | {} | {}/{} | {} | {} |\n",
                    r.workload,
                    r.params,
                    r.metric,
                    r.kessel,
                    r.peer,
                    ratio,
                    match r.better {
                        Better::Higher => "higher",
                        Better::Lower => "lower",
                    }
                ));
            }
        }
        out
    }

    /// Whether any kessel row failed (lost jobs, hung, errored).
    pub fn kessel_failed(&self) -> Vec<&Row> {
        self.rows
            .iter()
            .filter(|r| {
                r.system.starts_with("kessel")
                    && r.value.is_none()
                    && r.note.as_deref().is_some_and(|n| n.starts_with("FAILED"))
            })
            .collect()
    }
}

fn line(r: &Row) -> String {
    format!(
        "{} [{}] {} {}: {}{}{}",
        r.workload,
        r.params,
        r.system,
        r.metric,
        r.value
            .map(|v| format!("{} {}", human(v), r.unit))
            .unwrap_or_else(|| "—".into()),
        r.goal
            .as_ref()
            .map(|g| format!(" (goal {}: {})", g.text, g.verdict()))
            .unwrap_or_default(),
        r.note
            .as_ref()
            .map(|n| format!(" — {n}"))
            .unwrap_or_default()
    )
}

/// 1234567 → "1.23M", 0.0123 → "0.0123".
pub fn human(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.2}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}
