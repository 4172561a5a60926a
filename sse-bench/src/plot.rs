//! SVG plots drawn with `plotters` (no system libraries needed).

use std::path::Path;

use plotters::prelude::*;

use crate::Error;
use crate::load::Protocol;
use crate::report::Row;

const COLORS: [RGBColor; 4] = [RGBColor(31, 119, 180), RGBColor(214, 39, 40), GREEN, BLACK];

fn plot_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Plot {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Latency CDF (log-scale ms) of every publishing row of `scenario`, one line per server (repeated
/// runs merged).
pub fn latency_cdf(rows: &[Row], scenario: &str, path: &Path) -> Result<(), Error> {
    let mut merged: Vec<(String, crate::stats::Histogram)> = Vec::new();
    for r in rows.iter().filter(|r| r.scenario == scenario) {
        let Some(h) = r.latency.as_ref().filter(|h| h.count() > 0) else {
            continue;
        };
        let name = match r.protocol {
            Protocol::Http1 => r.server.clone(),
            p => format!("{} (HTTP/{})", r.server, p.label()),
        };
        match merged.iter_mut().find(|(n, _)| *n == name) {
            Some((_, m)) => m.merge(h),
            None => merged.push((name, h.clone())),
        }
    }
    let series: Vec<(String, Vec<(f64, f64)>)> = merged
        .into_iter()
        .map(|(name, h)| {
            let pts = h
                .cdf()
                .into_iter()
                .map(|(us, f)| ((us.max(1) as f64) / 1000.0, f * 100.0))
                .collect();
            (name, pts)
        })
        .collect();
    if series.is_empty() {
        return Ok(());
    }
    let max_ms = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|&(x, _)| x))
        .fold(1.0f64, f64::max)
        * 1.2;
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Publish-to-receive latency CDF: {scenario}"),
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d((0.001f64..max_ms).log_scale(), 0f64..100f64)
        .map_err(|e| plot_err(path, e))?;
    chart
        .configure_mesh()
        .x_desc("latency (ms, log scale)")
        .y_desc("% of events")
        .draw()
        .map_err(|e| plot_err(path, e))?;
    for (i, (name, pts)) in series.into_iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(|e| plot_err(path, e))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(|e| plot_err(path, e))?;
    root.present().map_err(|e| plot_err(path, e))
}

/// Server RSS (MiB) against idle subscriber count, one line per server.
pub fn rss_vs_subscribers(rows: &[Row], path: &Path) -> Result<(), Error> {
    let mut servers: Vec<&str> = rows
        .iter()
        .filter(|r| r.scenario == "idle" && r.rss_kib.is_some())
        .map(|r| r.server.as_str())
        .collect();
    servers.dedup();
    if servers.is_empty() {
        return Ok(());
    }
    let points = |server: &str| -> Vec<(f64, f64)> {
        rows.iter()
            .filter(|r| r.scenario == "idle" && r.server == server)
            .filter_map(|r| Some((r.subscribers as f64, r.rss_kib? as f64 / 1024.0)))
            .collect()
    };
    let max_x = rows.iter().map(|r| r.subscribers).max().unwrap_or(1) as f64 * 1.05;
    let max_y = servers
        .iter()
        .flat_map(|s| points(s))
        .map(|(_, y)| y)
        .fold(1.0f64, f64::max)
        * 1.15;
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Server RSS with idle subscribers", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..max_x, 0f64..max_y)
        .map_err(|e| plot_err(path, e))?;
    chart
        .configure_mesh()
        .x_desc("idle subscribers")
        .y_desc("RSS (MiB)")
        .draw()
        .map_err(|e| plot_err(path, e))?;
    for (i, server) in servers.into_iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts = points(server);
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(|e| plot_err(path, e))?
            .label(server)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 4, color.filled())))
            .map_err(|e| plot_err(path, e))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| plot_err(path, e))?;
    root.present().map_err(|e| plot_err(path, e))
}

/// p99 latency (ms, log scale) against the fixed rate of the `rates` scenario (log scale), one line
/// per server, the median over repeated runs.
pub fn p99_vs_rate(rows: &[Row], path: &Path) -> Result<(), Error> {
    let rated: Vec<&Row> = rows.iter().filter(|r| r.target_rate.is_some()).collect();
    let mut servers: Vec<&str> = Vec::new();
    for r in &rated {
        if !servers.contains(&r.server.as_str()) {
            servers.push(&r.server);
        }
    }
    let series: Vec<(&str, Vec<(f64, f64)>)> = servers
        .iter()
        .map(|s| {
            let mut rates: Vec<f64> = rated
                .iter()
                .filter(|r| r.server == *s)
                .filter_map(|r| r.target_rate)
                .collect();
            rates.sort_by(f64::total_cmp);
            rates.dedup();
            let pts = rates
                .into_iter()
                .filter_map(|rate| {
                    let mut p99: Vec<f64> = rated
                        .iter()
                        .filter(|r| r.server == *s && r.target_rate == Some(rate))
                        .filter_map(|r| r.latency.as_ref().filter(|h| h.count() > 0))
                        .map(|h| h.percentile(99.0).max(1) as f64 / 1000.0)
                        .collect();
                    p99.sort_by(f64::total_cmp);
                    p99.get(p99.len() / 2).map(|&v| (rate.max(0.1), v))
                })
                .collect();
            (*s, pts)
        })
        .filter(|(_, pts): &(&str, Vec<(f64, f64)>)| !pts.is_empty())
        .collect();
    if series.is_empty() {
        return Ok(());
    }
    let all = series.iter().flat_map(|(_, p)| p.iter());
    let (mut x_max, mut y_max, mut x_min, mut y_min) = (1.0f64, 1.0f64, f64::MAX, f64::MAX);
    for &(x, y) in all {
        (x_max, y_max) = (x_max.max(x), y_max.max(y));
        (x_min, y_min) = (x_min.min(x), y_min.min(y));
    }
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("p99 latency against publish rate", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(
            (x_min / 2.0..x_max * 2.0).log_scale(),
            (y_min / 2.0..y_max * 2.0).log_scale(),
        )
        .map_err(|e| plot_err(path, e))?;
    chart
        .configure_mesh()
        .x_desc("events/s (log scale)")
        .y_desc("p99 ms (log scale)")
        .draw()
        .map_err(|e| plot_err(path, e))?;
    for (i, (name, pts)) in series.into_iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(|e| plot_err(path, e))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 4, color.filled())))
            .map_err(|e| plot_err(path, e))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| plot_err(path, e))?;
    root.present().map_err(|e| plot_err(path, e))
}
