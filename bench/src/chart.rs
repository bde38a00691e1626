//! The chart of a run: throughput and round-trip bars of the tunnel and switching
//! rows just measured, written as a hand-made SVG (no plotting dependency). Both
//! axes are logarithmic, because the kernel's paths are tens of times faster than
//! the userspace ones and p99 latencies are tens of times the medians; every bar
//! carries its value.

use crate::common::Row;
use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::path::Path;

const LABEL_W: f64 = 250.0;
const PANEL_W: f64 = 330.0;
const GAP: f64 = 40.0;
const BAR_H: f64 = 9.0;
const ROW_H: f64 = 26.0;
const TITLE_H: f64 = 28.0;
const AXIS_H: f64 = 22.0;
const COLORS: [&str; 2] = ["#2f6db5", "#9cc3ea"];
/// Decades an axis may span: from tiny fractions to far beyond any figure.
const FIRST_DECADE: i32 = -9;
const LAST_DECADE: i32 = 12;

/// A logarithmic axis over whole decades covering every value.
#[derive(Debug, Clone, Copy)]
struct LogAxis {
    low: i32,
    high: i32,
}

impl LogAxis {
    fn covering(values: impl Iterator<Item = f64>) -> LogAxis {
        let (mut low, mut high) = (i32::MAX, i32::MIN);
        for v in values.filter(|v| *v > 0.0) {
            low = low.min(
                (FIRST_DECADE..=LAST_DECADE)
                    .rev()
                    .find(|&d| 10f64.powi(d) <= v)
                    .unwrap_or(FIRST_DECADE),
            );
            high = high.max(
                (FIRST_DECADE..=LAST_DECADE)
                    .find(|&d| 10f64.powi(d) >= v)
                    .unwrap_or(LAST_DECADE),
            );
        }
        if low > high {
            (low, high) = (0, 1);
        }
        LogAxis {
            low,
            high: high.max(low + 1),
        }
    }

    /// Horizontal offset of `v` inside a panel.
    fn x(&self, v: f64) -> f64 {
        let span = f64::from(self.high - self.low);
        ((v.max(10f64.powi(self.low)).log10() - f64::from(self.low)) / span * PANEL_W).max(1.0)
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn number(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// 10 to the power `d`, written out: 0.01, 0.1, 1, 10, 100.
fn decade_label(d: i32) -> String {
    let zeros = "0".repeat(d.unsigned_abs() as usize);
    if d >= 0 {
        format!("1{zeros}")
    } else {
        format!("0.{}1", &zeros[1..])
    }
}

/// One panel's bars for one row: two values (first dark, second light).
fn bars(svg: &mut String, left: f64, top: f64, axis: LogAxis, values: [Option<f64>; 2]) {
    for (i, v) in values.iter().enumerate() {
        let y = top + 3.0 + i as f64 * (BAR_H + 1.0);
        match v {
            Some(v) => {
                let w = axis.x(*v);
                let _ = write!(
                    svg,
                    r#"<rect x="{left:.1}" y="{y:.1}" width="{w:.1}" height="{BAR_H}" fill="{}"/><text x="{:.1}" y="{:.1}" font-size="9">{}</text>"#,
                    COLORS[i],
                    left + w + 3.0,
                    y + BAR_H - 1.0,
                    number(*v)
                );
            }
            None => {
                let _ = write!(
                    svg,
                    r##"<text x="{left:.1}" y="{:.1}" font-size="9" fill="#a00">not measured</text>"##,
                    y + BAR_H - 1.0
                );
            }
        }
    }
}

/// Gridlines at every decade, their labels under the panel, and a legend above it.
fn axis(svg: &mut String, left: f64, top: f64, bottom: f64, axis: LogAxis, legend: [&str; 2]) {
    for d in axis.low..=axis.high {
        let x = left + axis.x(10f64.powi(d));
        let _ = write!(
            svg,
            r##"<line x1="{x:.1}" y1="{top:.1}" x2="{x:.1}" y2="{bottom:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" font-size="9" text-anchor="middle">{}</text>"##,
            bottom + 12.0,
            decade_label(d)
        );
    }
    for (i, text) in legend.iter().enumerate() {
        let x = left + i as f64 * PANEL_W / 2.0;
        let _ = write!(
            svg,
            r#"<rect x="{x:.1}" y="{:.1}" width="10" height="10" fill="{}"/><text x="{:.1}" y="{:.1}" font-size="11">{}</text>"#,
            top - 16.0,
            COLORS[i],
            x + 14.0,
            top - 7.0,
            escape(text)
        );
    }
}

/// Writes the chart of `groups` (a title and its rows each) to `path`.
pub fn write(path: &Path, groups: &[(&str, Vec<Row>)]) -> Result<()> {
    let rows = || groups.iter().flat_map(|(_, rows)| rows.iter());
    let speed = LogAxis::covering(rows().flat_map(|r| [r.gbits_1, r.gbits_4]).flatten());
    let delay = LogAxis::covering(rows().flat_map(|r| [r.p50_us, r.p99_us]).flatten());
    let (left1, left2) = (LABEL_W, LABEL_W + PANEL_W + GAP + 40.0);
    let width = left2 + PANEL_W + 60.0;
    let mut body = String::new();
    let mut y = 30.0;
    for (title, rows) in groups {
        let _ = write!(
            body,
            r#"<text x="10" y="{:.1}" font-size="14" font-weight="bold">{}</text>"#,
            y + 16.0,
            escape(title)
        );
        y += TITLE_H + 16.0;
        let top = y;
        for row in rows {
            let _ = write!(
                body,
                r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"#,
                LABEL_W - 8.0,
                y + 15.0,
                escape(&row.name)
            );
            bars(&mut body, left1, y, speed, [row.gbits_1, row.gbits_4]);
            bars(&mut body, left2, y, delay, [row.p50_us, row.p99_us]);
            y += ROW_H;
        }
        axis(
            &mut body,
            left1,
            top,
            y,
            speed,
            ["1 stream Gbit/s", "4 streams Gbit/s"],
        );
        axis(
            &mut body,
            left2,
            top,
            y,
            delay,
            ["RTT p50 µs", "RTT p99 µs"],
        );
        y += AXIS_H;
    }
    let height = y + 24.0;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif">"#
    );
    let _ = write!(
        svg,
        r##"<rect width="100%" height="100%" fill="#fff"/><text x="10" y="18" font-size="12" fill="#444">TCP throughput (iperf3) and idle round trips (ping), measured in one run of `bench`; logarithmic axes</text>"##
    );
    svg += &body;
    let _ = write!(
        svg,
        r##"<text x="10" y="{:.1}" font-size="10" fill="#666">bench/RESULTS.md has the tables, the command and the conditions of this run</text></svg>"##,
        height - 8.0
    );
    svg.push('\n');
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, svg).with_context(|| format!("write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, gbits: Option<f64>, p50: f64) -> Row {
        Row {
            name: name.into(),
            gbits_1: gbits,
            gbits_4: gbits.map(|g| g * 2.0),
            p50_us: Some(p50),
            p99_us: Some(p50 * 10.0),
            note: String::new(),
        }
    }

    #[test]
    fn log_axis_spans_whole_decades_and_places_values_by_their_logarithm() {
        let axis = LogAxis::covering([0.3, 12.0].into_iter());
        assert_eq!((axis.low, axis.high), (-1, 2));
        assert!((axis.x(1.0) - PANEL_W / 3.0).abs() < 1e-9);
        assert!((axis.x(100.0) - PANEL_W).abs() < 1e-9);
        let labels: Vec<String> = (-2..=2).map(decade_label).collect();
        assert_eq!(labels, ["0.01", "0.1", "1", "10", "100"]);
    }

    #[test]
    fn chart_has_a_label_per_row_escaped_and_marks_missing_values() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("chart.svg");
        let groups = [(
            "Switching",
            vec![
                row("a <&> b", Some(0.9), 100.0),
                row("failed one", None, 50.0),
            ],
        )];
        write(&path, &groups)?;
        let svg = std::fs::read_to_string(&path)?;
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("a &lt;&amp;&gt; b"));
        assert!(svg.contains("failed one"));
        assert_eq!(svg.matches("not measured").count(), 2);
        assert!(svg.contains(">0.90<") && svg.contains(">1.8<"));
        Ok(())
    }
}
