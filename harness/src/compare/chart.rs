//! `fsync-policies.svg`: throughput against acknowledged-commit loss.
//!
//! One labelled point per target mode (engine policies, SQLite modes) at
//! the chart's thread count (8 if measured, else the largest): x is
//! acknowledged commits lost per 1,000 acknowledged under `power-loss`, y
//! is commits/s on a log scale. A mode measured without a crash side would
//! be a horizontal reference line at its throughput. Up and to the left is
//! better.

use super::CompareRow;
use crate::fault::FaultProfile;
use plotters::prelude::*;
use std::path::Path;

/// Pixels of the chart.
pub const WIDTH: u32 = 960;
pub const HEIGHT: u32 = 600;
/// The thread count the chart prefers.
pub const THREADS_PREFERRED: usize = 8;

const POLICY_COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(23, 190, 207),
    RGBColor(188, 189, 34),
];
const SQLITE_COLORS: [RGBColor; 2] = [RGBColor(23, 190, 207), RGBColor(188, 189, 34)];

/// One point: a policy's throughput and its loss under power loss.
struct Point {
    policy: String,
    commits_per_s: f64,
    loss_per_1000: f64,
}

/// The thread count charted: [`THREADS_PREFERRED`] if measured, else the
/// largest.
pub fn chart_threads(rows: &[CompareRow]) -> Option<usize> {
    if rows.iter().any(|row| row.threads == THREADS_PREFERRED) {
        Some(THREADS_PREFERRED)
    } else {
        rows.iter().map(|row| row.threads).max()
    }
}

/// Draws the chart into `path`.
pub fn write_svg(path: &Path, rows: &[CompareRow]) -> Result<(), String> {
    let threads = chart_threads(rows).ok_or("no rows to chart")?;
    let power_loss = FaultProfile::PowerLoss.to_string();
    let points: Vec<Point> = rows
        .iter()
        .filter(|row| row.threads == threads && row.fault == power_loss)
        .filter_map(|row| {
            Some(Point {
                policy: row.policy.clone(),
                commits_per_s: row.commits_per_s.filter(|&c| c > 0.0)?,
                loss_per_1000: row.loss_per_1000?,
            })
        })
        .collect();
    let sqlite: Vec<(String, f64)> = rows
        .iter()
        .filter(|row| {
            row.threads == threads && row.fault == power_loss && row.loss_per_1000.is_none()
        })
        .filter_map(|row| Some((row.policy.clone(), row.commits_per_s.filter(|&c| c > 0.0)?)))
        .collect();
    let throughputs = points
        .iter()
        .map(|p| p.commits_per_s)
        .chain(sqlite.iter().map(|s| s.1));
    let y_min = throughputs.clone().fold(f64::INFINITY, f64::min);
    let y_max = throughputs.fold(0.0, f64::max);
    if !y_min.is_finite() || y_max <= 0.0 {
        return Err("no throughput was measured: nothing to chart".into());
    }
    let x_max = points.iter().map(|p| p.loss_per_1000).fold(0.0, f64::max);
    let x_range = -0.05 * x_max.max(1.0)..x_max.max(1.0) * 1.25;
    let y_range = (y_min / 2.0)..(y_max * 2.0);
    draw(
        path,
        threads,
        &points,
        &sqlite,
        x_range,
        y_range,
        x_max.max(1.0),
    )
    .map_err(|e| e.to_string())
}

fn draw(
    path: &Path,
    threads: usize,
    points: &[Point],
    sqlite: &[(String, f64)],
    x_range: std::ops::Range<f64>,
    y_range: std::ops::Range<f64>,
    x_max: f64,
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let caption = format!(
        "targets: throughput vs. acknowledged commits lost to a power cut ({threads} threads)"
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 20))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(x_range.clone(), y_range.log_scale())?;
    chart
        .configure_mesh()
        .x_desc("acknowledged commits lost per 1,000 acknowledged, power-loss (lower is safer)")
        .y_desc("commits/s, log scale (higher is faster)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .light_line_style(WHITE)
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .draw()?;
    for (index, (name, commits_per_s)) in sqlite.iter().enumerate() {
        let color = SQLITE_COLORS[index % SQLITE_COLORS.len()];
        let y = *commits_per_s;
        chart
            .draw_series(LineSeries::new(
                [(x_range.start, y), (x_range.end, y)],
                color.stroke_width(2),
            ))?
            .label(format!("{name}: {y:.0} commits/s (throughput only)"))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(std::iter::once(Text::new(
            name.clone(),
            (x_max * 0.45, y),
            ("sans-serif", 13).into_font().color(&color),
        )))?;
    }
    for (index, point) in points.iter().enumerate() {
        let color = POLICY_COLORS[index % POLICY_COLORS.len()];
        let position = (point.loss_per_1000, point.commits_per_s);
        let label = point.policy.clone();
        chart
            .draw_series(std::iter::once(
                EmptyElement::at(position)
                    + Circle::new((0, 0), 7, color.filled())
                    + Text::new(
                        label.clone(),
                        (10, -18),
                        ("sans-serif", 15).into_font().color(&color),
                    ),
            ))?
            .label(format!(
                "{label}: {:.0} commits/s, {:.2} lost per 1,000",
                point.commits_per_s, point.loss_per_1000
            ))
            .legend(move |(x, y)| Circle::new((x + 10, y), 6, color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()?;
    root.present()?;
    Ok(())
}
