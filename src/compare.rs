//! `sweep compare A B`: what changed between two results folders.
//!
//! Two runs are only comparable when one knows what else differed between them, so the
//! comparison starts from `run.json` (model weights, backend, `sweep` build, experiment) and
//! then lines up the `summary.csv` rows of the same setting. A change of a metric between two
//! runs of the same setting is noise unless the runs' bootstrap intervals say otherwise, so
//! where both rows have a 95 % interval the change is marked significant when the intervals do
//! not overlap.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::report::number;
use crate::store::AtomicFile;

#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("{path}: no such results folder; give two folders written by `sweep run`")]
    NoFolder { path: PathBuf },
    #[error("{path}: not found; is {folder} a finished `sweep run` results folder?")]
    NoFile { path: PathBuf, folder: PathBuf },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    // The I/O error is part of the message rather than a `source`, so that `{:#}` does not
    // print it twice.
    #[error("{path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("writing {path}: {error}")]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, CompareError>;

/// The summary metrics compared, in `summary.csv` order.
pub use crate::summary::METRICS;

/// The columns of `compare.csv`, in order.
pub const COLUMNS: [&str; 6] = ["setting", "metric", "a", "b", "change", "significant"];

/// What `run.json` says about a run, as far as comparing is concerned.
#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo {
    pub dir: PathBuf,
    pub model_sha256: Option<String>,
    pub backend: Option<String>,
    pub sweep_version: Option<String>,
    pub git_commit: Option<String>,
    /// The experiment as resolved by the run (every default filled in).
    pub experiment: Value,
}

impl RunInfo {
    /// Read `dir/run.json`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = existing_file(dir, "run.json")?;
        let text = std::fs::read_to_string(&path).map_err(|error| CompareError::Read {
            path: path.clone(),
            error,
        })?;
        let json: Value = serde_json::from_str(&text).map_err(|e| CompareError::Invalid {
            path: path.clone(),
            message: format!("not valid JSON: {e}"),
        })?;
        Ok(Self::from_json(dir, &json))
    }

    /// The fields of a parsed `run.json`; absent ones are `None`.
    pub fn from_json(dir: &Path, json: &Value) -> Self {
        let text = |v: &Value| v.as_str().map(str::to_string);
        Self {
            dir: dir.to_path_buf(),
            model_sha256: text(&json["model"]["sha256"]),
            backend: text(&json["backend"]),
            sweep_version: text(&json["sweep_version"]),
            git_commit: text(&json["git_commit"]),
            experiment: json["experiment"].clone(),
        }
    }
}

/// One thing that differs between the runs, with both values as display text (`None` where a
/// run does not record it).
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    /// What differs: `model sha256`, `backend`, `sweep version`, `git commit`, or an
    /// experiment key such as `experiment.grid.top_k`.
    pub what: String,
    pub a: Option<String>,
    pub b: Option<String>,
}

/// Everything that differs between two runs' records. The experiment is compared key by key
/// at the top level, and inside `grid` and `beam` sub-key by sub-key, since those are where a
/// sweep is usually changed.
pub fn run_differences(a: &RunInfo, b: &RunInfo) -> Vec<Difference> {
    let mut out = Vec::new();
    for (what, x, y) in [
        ("model sha256", &a.model_sha256, &b.model_sha256),
        ("backend", &a.backend, &b.backend),
        ("sweep version", &a.sweep_version, &b.sweep_version),
        ("git commit", &a.git_commit, &b.git_commit),
    ] {
        if x != y {
            out.push(Difference {
                what: what.to_string(),
                a: x.clone(),
                b: y.clone(),
            });
        }
    }
    for key in keys(&a.experiment, &b.experiment) {
        let (x, y) = (&a.experiment[&key], &b.experiment[&key]);
        if x == y {
            continue;
        }
        if matches!(key.as_str(), "grid" | "beam") && x.is_object() && y.is_object() {
            for sub in keys(x, y) {
                if x[&sub] != y[&sub] {
                    out.push(Difference {
                        what: format!("experiment.{key}.{sub}"),
                        a: show_json(x.get(&sub)),
                        b: show_json(y.get(&sub)),
                    });
                }
            }
        } else {
            out.push(Difference {
                what: format!("experiment.{key}"),
                a: show_json(a.experiment.get(&key)),
                b: show_json(b.experiment.get(&key)),
            });
        }
    }
    out
}

/// The keys of two JSON objects: `a`'s in order, then those only `b` has.
fn keys(a: &Value, b: &Value) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for v in [a, b] {
        if let Some(map) = v.as_object() {
            for k in map.keys() {
                if !keys.contains(k) {
                    keys.push(k.clone());
                }
            }
        }
    }
    keys
}

/// A JSON value as one short line: compact JSON, cut at 60 characters. `None` for an absent
/// key, so that "absent" and `null` stay distinguishable.
fn show_json(v: Option<&Value>) -> Option<String> {
    let text = v?.to_string();
    Some(if text.chars().count() > 60 {
        text.chars().take(59).chain(['…']).collect()
    } else {
        text
    })
}

/// One row of a `summary.csv`: the setting id and every numeric cell by column name (`None`
/// for an empty cell: an undefined metric).
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRow {
    pub setting: String,
    pub values: HashMap<String, Option<f64>>,
}

impl SummaryRow {
    /// The value of a column; `None` when the cell is empty or the column absent.
    pub fn get(&self, column: &str) -> Option<f64> {
        self.values.get(column).copied().flatten()
    }

    /// The 95 % interval of `metric`, where the summary has one and it is defined.
    pub fn interval(&self, metric: &str) -> Option<(f64, f64)> {
        Some((
            self.get(&format!("{metric}_lo"))?,
            self.get(&format!("{metric}_hi"))?,
        ))
    }
}

/// Columns read as numbers: the metrics and their intervals. Parameters and ids are text.
fn is_numeric(column: &str) -> bool {
    METRICS.iter().any(|m| {
        column == *m
            || column
                .strip_prefix(m)
                .is_some_and(|rest| rest == "_lo" || rest == "_hi")
    })
}

/// Read `dir/summary.csv`.
pub fn load_summary(dir: &Path) -> Result<Vec<SummaryRow>> {
    let path = existing_file(dir, "summary.csv")?;
    let invalid = |message: String| CompareError::Invalid {
        path: path.clone(),
        message,
    };
    let mut reader = csv::Reader::from_path(&path).map_err(|e| invalid(e.to_string()))?;
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| invalid(e.to_string()))?
        .iter()
        .map(str::to_string)
        .collect();
    let setting = header
        .iter()
        .position(|h| h == "setting")
        .ok_or_else(|| invalid("no `setting` column; is this a sweep summary?".to_string()))?;
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| invalid(e.to_string()))?;
        let line = i + 2;
        let mut values = HashMap::new();
        for (column, cell) in header.iter().zip(record.iter()) {
            if !is_numeric(column) {
                continue;
            }
            let value = if cell.is_empty() {
                None
            } else {
                Some(cell.parse::<f64>().map_err(|_| {
                    invalid(format!(
                        "line {line}, column `{column}`: `{cell}` is not a number"
                    ))
                })?)
            };
            values.insert(column.clone(), value);
        }
        rows.push(SummaryRow {
            setting: record.get(setting).unwrap_or_default().to_string(),
            values,
        });
    }
    Ok(rows)
}

/// `dir/name`, or an error naming which of the two is missing.
fn existing_file(dir: &Path, name: &str) -> Result<PathBuf> {
    if !dir.is_dir() {
        return Err(CompareError::NoFolder {
            path: dir.to_path_buf(),
        });
    }
    let path = dir.join(name);
    if !path.is_file() {
        return Err(CompareError::NoFile {
            path,
            folder: dir.to_path_buf(),
        });
    }
    Ok(path)
}

/// One metric of one setting in both runs.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricChange {
    pub setting: String,
    pub metric: &'static str,
    pub a: Option<f64>,
    pub b: Option<f64>,
    /// `b − a`, where both are defined.
    pub change: Option<f64>,
    /// Whether the two 95 % intervals are disjoint; `None` where either run has no interval.
    pub significant: Option<bool>,
}

/// Whether two intervals are disjoint. Touching intervals overlap.
pub fn disjoint(a: (f64, f64), b: (f64, f64)) -> bool {
    a.1 < b.0 || b.1 < a.0
}

/// The rows of two summaries matched by setting id (which encodes strategy, temperature,
/// top-k, top-p, seed, beams, length penalty and early stopping).
#[derive(Debug, Clone, PartialEq)]
pub struct Matched {
    /// Every metric of every setting both runs have, in `a`'s row order.
    pub changes: Vec<MetricChange>,
    /// Settings only in `a`, then only in `b`, in their files' order.
    pub only_a: Vec<String>,
    pub only_b: Vec<String>,
}

pub fn match_rows(a: &[SummaryRow], b: &[SummaryRow]) -> Matched {
    let index_b: HashMap<&str, &SummaryRow> =
        b.iter().rev().map(|r| (r.setting.as_str(), r)).collect();
    let in_a: std::collections::HashSet<&str> = a.iter().map(|r| r.setting.as_str()).collect();
    let mut changes = Vec::new();
    let mut only_a = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for ra in a {
        if !seen.insert(ra.setting.as_str()) {
            continue;
        }
        let Some(rb) = index_b.get(ra.setting.as_str()) else {
            only_a.push(ra.setting.clone());
            continue;
        };
        for metric in METRICS {
            let (x, y) = (ra.get(metric), rb.get(metric));
            changes.push(MetricChange {
                setting: ra.setting.clone(),
                metric,
                a: x,
                b: y,
                change: x.zip(y).map(|(x, y)| y - x),
                significant: ra
                    .interval(metric)
                    .zip(rb.interval(metric))
                    .map(|(ia, ib)| disjoint(ia, ib)),
            });
        }
    }
    let mut only_b = Vec::new();
    for rb in b {
        if !in_a.contains(rb.setting.as_str()) && !only_b.contains(&rb.setting) {
            only_b.push(rb.setting.clone());
        }
    }
    Matched {
        changes,
        only_a,
        only_b,
    }
}

/// A whole comparison: both runs' records, what differs, and the matched metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub a: RunInfo,
    pub b: RunInfo,
    pub differences: Vec<Difference>,
    pub matched: Matched,
}

/// Read two results folders and compare them.
pub fn compare(a: &Path, b: &Path) -> Result<Comparison> {
    let rows_a = load_summary(a)?;
    let rows_b = load_summary(b)?;
    let run_a = RunInfo::load(a)?;
    let run_b = RunInfo::load(b)?;
    Ok(Comparison {
        differences: run_differences(&run_a, &run_b),
        matched: match_rows(&rows_a, &rows_b),
        a: run_a,
        b: run_b,
    })
}

fn cell(x: Option<f64>) -> String {
    x.map(|x| number(x, 6)).unwrap_or_default()
}

/// Write `compare.csv` (RFC 4180, CRLF rows, plain decimals, empty cells for undefined
/// values), under a temporary name renamed into place.
pub fn write_csv(path: &Path, changes: &[MetricChange]) -> Result<()> {
    let err = |error: std::io::Error| CompareError::Write {
        path: path.to_path_buf(),
        error,
    };
    let mut file = AtomicFile::create(path).map_err(err)?;
    {
        let mut w = csv::WriterBuilder::new()
            .terminator(csv::Terminator::CRLF)
            .from_writer(&mut file);
        w.write_record(COLUMNS).map_err(|e| err(e.into()))?;
        for c in changes {
            w.write_record([
                c.setting.clone(),
                c.metric.to_string(),
                cell(c.a),
                cell(c.b),
                cell(c.change),
                c.significant.map(|s| s.to_string()).unwrap_or_default(),
            ])
            .map_err(|e| err(e.into()))?;
        }
        w.flush().map_err(err)?;
    }
    file.finish().map_err(err)
}

/// Columns padded to their widest cell; the first `left` columns left-aligned, the rest
/// right-aligned (numbers).
fn table(rows: &[Vec<String>], left: usize) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, text) in row.iter().enumerate() {
            let pad = " ".repeat(widths[c] - text.chars().count());
            if c > 0 {
                line.push_str("  ");
            }
            if c < left {
                line.push_str(text);
                line.push_str(&pad);
            } else {
                line.push_str(&pad);
                line.push_str(text);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A value for the terminal: 4 decimals, `-` where undefined.
fn show(x: Option<f64>) -> String {
    match x.map(|x| number(x, 4)) {
        Some(s) if !s.is_empty() => s,
        _ => "-".to_string(),
    }
}

/// A change for the terminal: signed, with `*` when significant (a blank of the same width
/// otherwise, so the digits stay aligned).
fn show_change(c: &MetricChange) -> String {
    let mut s = show(c.change);
    if c.change.is_some_and(|x| x > 0.0) && s != "0" {
        s.insert(0, '+');
    }
    s.push(if c.significant == Some(true) {
        '*'
    } else {
        ' '
    });
    s
}

/// The terminal report: how the runs differ, then a table of every matched setting's metrics
/// (`a`, `b`, change, `*` where the 95 % intervals do not overlap), then the settings only one
/// run has.
pub fn render(cmp: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "A: {}", cmp.a.dir.display());
    let _ = writeln!(out, "B: {}", cmp.b.dir.display());
    let unknown = |x: &Option<String>| x.clone().unwrap_or_else(|| "(not recorded)".into());
    let same = |what: &str, x: &Option<String>| format!("  {what:<14} same: {}", unknown(x));
    for (what, x) in [
        ("model sha256", &cmp.a.model_sha256),
        ("backend", &cmp.a.backend),
        ("sweep version", &cmp.a.sweep_version),
        ("git commit", &cmp.a.git_commit),
    ] {
        if !cmp.differences.iter().any(|d| d.what == what) {
            let _ = writeln!(out, "{}", same(what, x));
        }
    }
    if !cmp
        .differences
        .iter()
        .any(|d| d.what.starts_with("experiment."))
    {
        let _ = writeln!(out, "  experiment     same");
    }
    if !cmp.differences.is_empty() {
        let _ = writeln!(out, "differences (A → B):");
        let rows: Vec<Vec<String>> = cmp
            .differences
            .iter()
            .map(|d| {
                vec![
                    format!("  {}", d.what),
                    unknown(&d.a),
                    "→".to_string(),
                    unknown(&d.b),
                ]
            })
            .collect();
        out.push_str(&table(&rows, 4));
    }
    out.push('\n');

    let changes = &cmp.matched.changes;
    if changes.is_empty() {
        let _ = writeln!(out, "no setting is in both runs");
    } else {
        let mut rows = vec![vec![
            "setting".to_string(),
            "metric".to_string(),
            "a".to_string(),
            "b".to_string(),
            "change ".to_string(),
        ]];
        let mut previous = "";
        for c in changes {
            let first = c.setting != previous;
            previous = &c.setting;
            rows.push(vec![
                if first {
                    c.setting.clone()
                } else {
                    String::new()
                },
                c.metric.to_string(),
                show(c.a),
                show(c.b),
                show_change(c),
            ]);
        }
        out.push_str(&table(&rows, 2));
        let settings = changes
            .iter()
            .map(|c| c.setting.as_str())
            .collect::<std::collections::HashSet<_>>()
            .len();
        let significant = changes
            .iter()
            .filter(|c| c.significant == Some(true))
            .count();
        let _ = writeln!(
            out,
            "{settings} settings in both runs; change = b − a; * = the 95 % intervals do not \
             overlap ({significant} such changes; only mean_perplexity, distinct_2 and \
             self_bleu_4 have intervals)"
        );
    }
    for (run, only) in [("A", &cmp.matched.only_a), ("B", &cmp.matched.only_b)] {
        if !only.is_empty() {
            let _ = writeln!(out, "only in {run}: {}", only.join(", "));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(setting: &str, values: &[(&str, Option<f64>)]) -> SummaryRow {
        SummaryRow {
            setting: setting.to_string(),
            values: values.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }

    #[test]
    fn intervals_that_touch_overlap() {
        assert!(disjoint((1.0, 2.0), (2.5, 3.0)));
        assert!(disjoint((2.5, 3.0), (1.0, 2.0)));
        assert!(!disjoint((1.0, 2.0), (2.0, 3.0)));
        assert!(!disjoint((1.0, 3.0), (1.5, 2.0)));
    }

    #[test]
    fn rows_match_by_setting_and_significance_needs_both_intervals() {
        let a = vec![
            row(
                "greedy",
                &[
                    ("mean_perplexity", Some(10.0)),
                    ("mean_perplexity_lo", Some(9.0)),
                    ("mean_perplexity_hi", Some(11.0)),
                    ("distinct_2", Some(0.5)),
                    ("distinct_2_lo", Some(0.4)),
                    ("distinct_2_hi", Some(0.6)),
                    ("self_bleu_4", Some(0.1)),
                    ("self_bleu_4_lo", None),
                    ("self_bleu_4_hi", None),
                    ("distinct_1", Some(0.25)),
                ],
            ),
            row("sample_t1_k0_p1_s1", &[]),
        ];
        let b = vec![
            row("beam_n2_lp1", &[]),
            row(
                "greedy",
                &[
                    ("mean_perplexity", Some(13.0)),
                    ("mean_perplexity_lo", Some(12.0)),
                    ("mean_perplexity_hi", Some(14.0)),
                    ("distinct_2", Some(0.55)),
                    ("distinct_2_lo", Some(0.45)),
                    ("distinct_2_hi", Some(0.65)),
                    ("self_bleu_4", Some(0.2)),
                    ("self_bleu_4_lo", Some(0.1)),
                    ("self_bleu_4_hi", Some(0.3)),
                    ("distinct_1", None),
                ],
            ),
        ];
        let m = match_rows(&a, &b);
        assert_eq!(m.only_a, vec!["sample_t1_k0_p1_s1"]);
        assert_eq!(m.only_b, vec!["beam_n2_lp1"]);
        assert_eq!(m.changes.len(), METRICS.len());
        let get = |metric: &str| m.changes.iter().find(|c| c.metric == metric).unwrap();
        assert_eq!(get("mean_perplexity").change, Some(3.0));
        assert_eq!(get("mean_perplexity").significant, Some(true));
        assert_eq!(get("distinct_2").significant, Some(false));
        // A's Self-BLEU interval is undefined: nothing to decide with.
        assert_eq!(get("self_bleu_4").significant, None);
        // A metric without intervals, undefined in B: no change, no verdict.
        assert_eq!(get("distinct_1").change, None);
        assert_eq!(get("distinct_1").significant, None);
        assert_eq!(get("zipf_coefficient").a, None);
    }

    #[test]
    fn differences_name_experiment_keys_and_grid_sub_keys() {
        let base = json!({
            "model": {"sha256": "aa"},
            "backend": "flex/cpu",
            "sweep_version": "0.1.0",
            "git_commit": "abc",
            "experiment": {
                "name": "a",
                "samples": 4,
                "grid": {"temperature": [0.8], "top_k": [0, 20]},
                "beam": null,
            }
        });
        let mut other = base.clone();
        other["backend"] = json!("tch/cuda:0");
        other["git_commit"] = Value::Null;
        other["experiment"]["name"] = json!("b");
        other["experiment"]["grid"]["top_k"] = json!([0, 30]);
        other["experiment"]["beam"] = json!({"num_beams": [2]});
        other["experiment"]["baseline"] = json!(2);
        let a = RunInfo::from_json(Path::new("a"), &base);
        let b = RunInfo::from_json(Path::new("b"), &other);
        let d = run_differences(&a, &b);
        let what: Vec<&str> = d.iter().map(|d| d.what.as_str()).collect();
        assert_eq!(
            what,
            vec![
                "backend",
                "git commit",
                "experiment.beam",
                "experiment.grid.top_k",
                "experiment.name",
                "experiment.baseline",
            ]
        );
        assert_eq!(d[1].b, None);
        assert_eq!(d[3].a.as_deref(), Some("[0,20]"));
        assert_eq!(d[3].b.as_deref(), Some("[0,30]"));
        assert_eq!(d[2].a.as_deref(), Some("null"));
        assert_eq!(d[5].a, None);
        assert!(run_differences(&a, &a).is_empty());
        let text = render(&Comparison {
            a: a.clone(),
            b,
            differences: d,
            matched: match_rows(&[], &[]),
        });
        assert!(text.contains("model sha256   same: aa"), "{text}");
        assert!(text.contains("experiment.grid.top_k"), "{text}");
    }

    #[test]
    fn long_values_are_cut() {
        let long = json!("x".repeat(100));
        let shown = show_json(Some(&long)).unwrap();
        assert_eq!(shown.chars().count(), 60);
        assert!(shown.ends_with('…'));
    }

    #[test]
    fn tables_align_and_changes_are_signed_and_starred() {
        let t = table(
            &[
                vec!["a".into(), "1".into()],
                vec!["long".into(), "100".into()],
            ],
            1,
        );
        assert_eq!(t, "a       1\nlong  100\n");
        let mut c = MetricChange {
            setting: "s".into(),
            metric: "distinct_2",
            a: Some(0.1),
            b: Some(0.3),
            change: Some(0.3 - 0.1),
            significant: Some(true),
        };
        assert_eq!(show_change(&c), "+0.2*");
        c.change = Some(-0.5);
        c.significant = Some(false);
        assert_eq!(show_change(&c), "-0.5 ");
        c.change = None;
        assert_eq!(show_change(&c), "- ");
    }

    #[test]
    fn missing_folders_and_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = compare(&missing, dir.path()).unwrap_err();
        assert!(matches!(err, CompareError::NoFolder { .. }));
        assert!(err.to_string().contains("nope"));
        let err = load_summary(dir.path()).unwrap_err();
        assert!(err.to_string().contains("summary.csv"), "{err}");
    }

    #[test]
    fn summaries_round_trip_through_compare_csv() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("summary.csv"),
            "setting,strategy,mean_perplexity,mean_perplexity_lo,mean_perplexity_hi,eos_rate\r\n\
             greedy,greedy,10.5,9,12,\r\n",
        )
        .unwrap();
        let rows = load_summary(dir.path()).unwrap();
        assert_eq!(rows[0].get("mean_perplexity"), Some(10.5));
        assert_eq!(rows[0].get("eos_rate"), None);
        assert_eq!(rows[0].interval("mean_perplexity"), Some((9.0, 12.0)));
        let m = match_rows(&rows, &rows);
        let out = dir.path().join("compare.csv");
        write_csv(&out, &m.changes).unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        let mut lines = text.split("\r\n");
        assert_eq!(lines.next(), Some("setting,metric,a,b,change,significant"));
        assert_eq!(
            lines.next(),
            Some("greedy,mean_perplexity,10.5,10.5,0,false")
        );
        assert_eq!(lines.next(), Some("greedy,corpus_perplexity,,,,"));
        std::fs::write(
            dir.path().join("summary.csv"),
            "setting,distinct_2\r\ngreedy,lots\r\n",
        )
        .unwrap();
        let err = load_summary(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("line 2") && err.contains("distinct_2"),
            "{err}"
        );
    }
}
