//! The developer binary as a developer runs it: the benchmark tables it writes.

use std::process::{Command, Output};

fn lms_dev(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lms-dev")).args(args).env("NO_COLOR", "1").output().expect("lms-dev runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `lms-dev bench-sampling`: a row for each setting at both vocabulary sizes, every figure a positive
/// number (the times themselves are not asserted).
#[test]
fn bench_sampling_writes_a_row_per_setting_and_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_file = dir.path().join("sampling.md");
    let out = lms_dev(&[
        "bench-sampling",
        "--rounds",
        "20",
        "--repetitions",
        "1",
        "--out",
        out_file.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let md = std::fs::read_to_string(&out_file).expect("the table");
    let rows: Vec<Vec<&str>> = md
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| setting"))
        .map(|l| l.trim_matches('|').split(" | ").map(str::trim).collect())
        .collect();
    assert_eq!(rows.len(), 8, "{md}");
    for size in ["152064", "262144"] {
        assert_eq!(rows.iter().filter(|r| r[1] == size).count(), 4, "{md}");
    }
    for row in &rows {
        let figures: Vec<f64> = row[2..].iter().map(|f| f.parse().expect("a number")).collect();
        assert!(figures.iter().all(|&f| f > 0.0 && f.is_finite()), "{row:?}");
    }
}
