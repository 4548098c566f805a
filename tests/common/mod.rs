//! Helpers shared by the integration tests that compare results folders.

use std::path::Path;

/// The CSV's cells, row by row, with the timing column emptied: two runs of the same
/// experiment must agree on everything else.
#[allow(dead_code)]
pub fn csv_without_timing(path: &Path) -> Vec<Vec<String>> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    let timing = header.iter().position(|h| h == "tokens_per_s");
    let mut rows = vec![header];
    for record in reader.records() {
        let mut row: Vec<String> = record.unwrap().iter().map(String::from).collect();
        if let Some(i) = timing {
            row[i].clear();
        }
        rows.push(row);
    }
    rows
}

/// Rows as maps from column name to cell.
#[allow(dead_code)]
pub fn csv_rows(path: &Path) -> Vec<std::collections::HashMap<String, String>> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    reader
        .records()
        .map(|r| {
            header
                .iter()
                .cloned()
                .zip(r.unwrap().iter().map(String::from))
                .collect()
        })
        .collect()
}
