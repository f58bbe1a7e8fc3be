//! The comparison as a Markdown table and a PNG plot.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use paddock_proxy::Mode;
use plotters::prelude::*;

/// DejaVu Sans, from Debian's `fonts-dejavu-core`.
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// One mode at one size.
pub struct Row {
    pub mode: Mode,
    pub services: usize,
    pub full_sync_ms: f64,
    pub change_ms: Vec<f64>,
    pub cpu_seconds: f64,
    pub peak_rss_kib: u64,
    pub connects: Vec<Duration>,
    pub requests_per_second: f64,
    pub wrk_errors: u64,
}

pub fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Iptables => "iptables",
        Mode::Ipvs => "ipvs",
    }
}

/// The `q` quantile (nearest rank) of `values`.
fn quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

impl Row {
    fn change_median(&self) -> f64 {
        quantile(&self.change_ms, 0.5)
    }

    fn connect_ms(&self, q: f64) -> f64 {
        let ms: Vec<f64> = self
            .connects
            .iter()
            .map(|d| d.as_secs_f64() * 1e3)
            .collect();
        quantile(&ms, q)
    }
}

/// What one run was asked to do, for the table's caption.
pub struct Setup {
    pub endpoints: usize,
    pub changes: usize,
    pub connects: usize,
    pub wrk_seconds: u64,
    pub vm_memory_mib: u32,
}

pub fn markdown(rows: &[Row], setup: &Setup) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Proxy modes: iptables against IPVS, {} endpoints per service\n\n\
         Each mode at each size on a fresh User-Mode Linux VM (Debian's \
         `linux.uml`, 1 CPU, {} MiB; iptables-legacy) running the proxy's \
         backend as `paddock proxy` makes it, fed a synthetic model of N \
         ClusterIP services. Full sync: the first sync. One change: one \
         service's endpoint replaced, median of {}. First packet: a new TCP \
         connection from the VM's LAN to the cluster IP of the service matched \
         last, {} connects. req/s: `wrk -t2 -c32 -d{}s -H 'Connection: close'` \
         through a node port (every request a new connection). The endpoints \
         answer on the host's kernel. CPU and peak RSS: the proxy process \
         over the full sync and the changes.\n\n\
         | services | mode | full sync (ms) | one change (ms) | first packet p50 (ms) | p99 (ms) | req/s | wrk errors | proxy CPU (s) | proxy RSS (MiB) |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        setup.endpoints, setup.vm_memory_mib, setup.changes, setup.connects, setup.wrk_seconds,
    );
    for row in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.1} | {:.2} | {:.2} | {:.0} | {} | {:.2} | {:.0} |",
            row.services,
            mode_name(row.mode),
            row.full_sync_ms,
            row.change_median(),
            row.connect_ms(0.5),
            row.connect_ms(0.99),
            row.requests_per_second,
            row.wrk_errors,
            row.cpu_seconds,
            row.peak_rss_kib as f64 / 1024.0,
        );
    }
    let pairs = pairs(rows);
    if !pairs.is_empty() {
        let _ = writeln!(
            out,
            "\n### iptables ÷ IPVS (above 1: iptables takes longer, or serves more)\n\n\
             | services | full sync | one change | first packet p50 | p99 | req/s | proxy CPU | proxy RSS |\n\
             |---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for (iptables, ipvs) in pairs {
            let _ = writeln!(
                out,
                "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
                iptables.services,
                iptables.full_sync_ms / ipvs.full_sync_ms,
                iptables.change_median() / ipvs.change_median(),
                iptables.connect_ms(0.5) / ipvs.connect_ms(0.5),
                iptables.connect_ms(0.99) / ipvs.connect_ms(0.99),
                iptables.requests_per_second / ipvs.requests_per_second,
                iptables.cpu_seconds / ipvs.cpu_seconds,
                iptables.peak_rss_kib as f64 / ipvs.peak_rss_kib as f64,
            );
        }
    }
    out
}

/// The iptables and IPVS rows of each size measured in both modes.
fn pairs(rows: &[Row]) -> Vec<(&Row, &Row)> {
    rows.iter()
        .filter(|r| r.mode == Mode::Iptables)
        .filter_map(|iptables| {
            let ipvs = rows
                .iter()
                .find(|r| r.mode == Mode::Ipvs && r.services == iptables.services)?;
            Some((iptables, ipvs))
        })
        .collect()
}

/// Sync times (left) and first-packet latency (right) against the number
/// of services, both on log scales, one colour per mode.
pub fn plot(rows: &[Row], path: &Path) -> Result<()> {
    let font = std::fs::read(FONT)
        .with_context(|| format!("reading {FONT} (scripts/deps.sh test installs it)"))?;
    plotters::style::register_font("sans-serif", FontStyle::Normal, font.leak())
        .map_err(|_| anyhow!("{FONT} is not a font plotters can use"))?;

    let root = BitMapBackend::new(path, (1200, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let (left, right) = root.split_horizontally(600);
    let series = |metric: fn(&Row) -> f64| -> Vec<(Mode, Vec<(f64, f64)>)> {
        [Mode::Iptables, Mode::Ipvs]
            .into_iter()
            .map(|mode| {
                let points = rows
                    .iter()
                    .filter(|r| r.mode == mode)
                    .map(|r| (r.services as f64, metric(r)))
                    .collect();
                (mode, points)
            })
            .collect()
    };
    panel(
        &left,
        "Sync time",
        "ms",
        &[
            ("full sync", 3, series(|r| r.full_sync_ms)),
            ("one change", 1, series(Row::change_median)),
        ],
    )?;
    panel(
        &right,
        "First-packet latency (new TCP connection)",
        "ms",
        &[
            ("p50", 3, series(|r| r.connect_ms(0.5))),
            ("p99", 1, series(|r| r.connect_ms(0.99))),
        ],
    )?;
    root.present().map_err(plot_error)?;
    Ok(())
}

type Lines = (&'static str, u32, Vec<(Mode, Vec<(f64, f64)>)>);

fn panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    title: &str,
    unit: &str,
    lines: &[Lines],
) -> Result<()> {
    let points = || {
        lines
            .iter()
            .flat_map(|(_, _, s)| s.iter().flat_map(|(_, p)| p))
    };
    let (x_min, x_max) = bounds(points().map(|p| p.0));
    let (y_min, y_max) = bounds(points().map(|p| p.1));
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(
            (x_min * 0.8..x_max * 1.25).log_scale(),
            (y_min * 0.8..y_max * 1.25).log_scale(),
        )
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .light_line_style(RGBColor(235, 235, 235))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y}"))
        .x_desc("services (5 endpoints each)")
        .y_desc(unit)
        .draw()
        .map_err(plot_error)?;
    for (what, width, series) in lines {
        for (mode, points) in series {
            let color = match mode {
                Mode::Iptables => RED,
                Mode::Ipvs => BLUE,
            };
            let style = color.stroke_width(*width);
            chart
                .draw_series(LineSeries::new(points.iter().copied(), style))
                .map_err(plot_error)?
                .label(format!("{} {what}", mode_name(*mode)))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    Ok(())
}

/// The least and greatest positive values (1..10 when there are none).
fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold(None, |acc: Option<(f64, f64)>, v| {
            Some(acc.map_or((v, v), |(lo, hi)| (lo.min(v), hi.max(v))))
        })
        .unwrap_or((1.0, 10.0))
}

fn plot_error(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing the plot: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(mode: Mode, services: usize, scale: f64) -> Row {
        Row {
            mode,
            services,
            full_sync_ms: 100.0 * scale,
            change_ms: vec![3.0 * scale, 1.0 * scale, 2.0 * scale],
            cpu_seconds: 0.5 * scale,
            peak_rss_kib: 20480,
            connects: (1..=100).map(Duration::from_micros).collect(),
            requests_per_second: 1000.0 / scale,
            wrk_errors: 0,
        }
    }

    #[test]
    fn the_table_has_a_row_per_run_and_ratios_per_size() {
        let rows = [
            row(Mode::Iptables, 100, 2.0),
            row(Mode::Ipvs, 100, 1.0),
            row(Mode::Iptables, 1000, 4.0),
        ];
        let setup = Setup {
            endpoints: 5,
            changes: 3,
            connects: 100,
            wrk_seconds: 10,
            vm_memory_mib: 1024,
        };
        let text = markdown(&rows, &setup);
        assert!(
            text.contains("| 100 | iptables | 200 | 4.0 | 0.05 | 0.10 | 500 | 0 | 1.00 | 20 |"),
            "{text}"
        );
        assert!(text.contains("| 1000 | iptables | 400 |"), "{text}");
        // Only 100 services ran in both modes.
        assert!(
            text.contains("| 100 | 2.00 | 2.00 | 1.00 | 1.00 | 0.50 | 2.00 | 1.00 |"),
            "{text}"
        );
        assert!(!text.contains("| 1000 | 4.00"), "{text}");
    }

    #[test]
    fn the_plot_is_a_png() {
        let rows = [
            row(Mode::Iptables, 100, 2.0),
            row(Mode::Ipvs, 100, 1.0),
            row(Mode::Iptables, 1000, 4.0),
            row(Mode::Ipvs, 1000, 1.2),
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plot.png");
        plot(&rows, &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
        assert!(bytes.len() > 10_000, "{} bytes", bytes.len());
    }
}
