//! The report's figures, each written as PNG and SVG with plotters: Dice per subset and region
//! (a heatmap), the importance weights ω over training, the loss curves, and one case's slices
//! (input modalities, reference and predicted labels).

use std::path::{Path, PathBuf};

use metakd_data::files::{partial_path_with_extension, write_atomic_via};
use plotters::backend::RGBPixel;
use plotters::coord::Shift;
use plotters::element::BitMapElement;
use plotters::prelude::*;
use plotters::style::colors::colormaps::ViridisRGB;
use polars::prelude::*;

use crate::aggregate::{GroupTable, REGIONS};
use crate::error::{ReportError, Result};
use crate::results::{read_parquet, table_error};
use crate::slices::CaseSlices;

/// A figure that can be drawn on any plotters backend.
pub trait Figure {
    /// Size in pixels.
    fn size(&self) -> (u32, u32);
    /// Draws the figure.
    fn draw<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String>;
}

fn drawing<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// Draws `figure` to `<stem>.png` and `<stem>.svg` (each through a temporary file and a
/// rename) and returns both paths.
pub fn save(figure: &impl Figure, stem: &Path) -> Result<[PathBuf; 2]> {
    let failed = |problem: String| ReportError::Figure {
        path: stem.to_owned(),
        problem,
    };
    let png = stem.with_extension("png");
    let svg = stem.with_extension("svg");
    let draw = |path: &Path, temp: &Path, svg: bool| {
        write_atomic_via(path, temp, |temp| -> Result<()> {
            if svg {
                let area = SVGBackend::new(temp, figure.size()).into_drawing_area();
                figure.draw(&area).map_err(failed)?;
                area.present().map_err(|e| failed(e.to_string()))
            } else {
                let area = BitMapBackend::new(temp, figure.size()).into_drawing_area();
                figure.draw(&area).map_err(failed)?;
                area.present().map_err(|e| failed(e.to_string()))
            }
        })
    };
    draw(&png, &partial_path_with_extension(&png, "png"), false)?;
    draw(&svg, &partial_path_with_extension(&svg, "svg"), true)?;
    Ok([png, svg])
}

/// Mean Dice of every subset (rows) and region (columns) of one table, as a heatmap.
pub struct DiceHeatmap<'a> {
    /// The table.
    pub table: &'a GroupTable,
    /// Modality names in channel order.
    pub modalities: &'a [String],
}

const LABEL_WIDTH: i32 = 230;
const CELL: (i32, i32) = (110, 28);
const TOP: i32 = 60;

impl Figure for DiceHeatmap<'_> {
    fn size(&self) -> (u32, u32) {
        let rows = self.table.rows.len() as i32;
        (
            (LABEL_WIDTH + 3 * CELL.0 + 20) as u32,
            (TOP + rows * CELL.1 + 20) as u32,
        )
    }

    fn draw<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        area.fill(&WHITE).map_err(drawing)?;
        let g = &self.table.group;
        let title = format!("Dice (%) per subset: {} on {}", g.variant, g.dataset);
        area.draw(&Text::new(title, (10, 8), ("sans-serif", 18).into_font()))
            .map_err(drawing)?;
        let font = ("sans-serif", 14).into_font();
        for (c, region) in REGIONS.iter().enumerate() {
            let x = LABEL_WIDTH + c as i32 * CELL.0 + CELL.0 / 2 - 10;
            area.draw(&Text::new(region.to_string(), (x, TOP - 22), font.clone()))
                .map_err(drawing)?;
        }
        for (r, row) in self.table.rows.iter().enumerate() {
            let y = TOP + r as i32 * CELL.1;
            let name: Vec<&str> = self
                .modalities
                .iter()
                .enumerate()
                .filter(|(m, _)| row.contains(*m))
                .map(|(_, n)| n.as_str())
                .collect();
            area.draw(&Text::new(name.join(" + "), (10, y + 6), font.clone()))
                .map_err(drawing)?;
            for (c, stat) in row.stats.dice.iter().enumerate() {
                let x = LABEL_WIDTH + c as i32 * CELL.0;
                let value = stat.mean.clamp(0.0, 1.0);
                let colour = ViridisRGB::get_color(value);
                area.draw(&Rectangle::new(
                    [(x, y), (x + CELL.0 - 2, y + CELL.1 - 2)],
                    colour.filled(),
                ))
                .map_err(drawing)?;
                let ink = if value > 0.6 { &BLACK } else { &WHITE };
                area.draw(&Text::new(
                    format!("{:.1}", 100.0 * stat.mean),
                    (x + CELL.0 / 2 - 18, y + 6),
                    font.clone().color(ink),
                ))
                .map_err(drawing)?;
            }
        }
        Ok(())
    }
}

/// Per-iteration values of a run's training log (`train_log.parquet`).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingLog {
    /// The run.
    pub run_id: String,
    /// Iteration of each row.
    pub iterations: Vec<f64>,
    /// Loss terms: name and values.
    pub losses: Vec<(String, Vec<f64>)>,
    /// Importance weights ω: modality and values.
    pub omegas: Vec<(String, Vec<f64>)>,
}

impl TrainingLog {
    /// Reads the log at `path` of run `run_id`; `modalities` names the `omega_*` columns.
    pub fn read(path: &Path, run_id: &str, modalities: &[String]) -> Result<Self> {
        let df = read_parquet(path)?;
        let values = |name: &str| -> Result<Vec<f64>> {
            let c = df.column(name).map_err(table_error(path))?;
            let c = c.cast(&DataType::Float64).map_err(table_error(path))?;
            Ok(c.f64()
                .map_err(table_error(path))?
                .to_vec()
                .into_iter()
                .map(|v| v.unwrap_or(f64::NAN))
                .collect())
        };
        let losses = [
            ("total", "loss"),
            ("Dice", "dice_loss"),
            ("BCE", "bce_loss"),
            ("KD", "kd_loss"),
        ]
        .iter()
        .map(|(label, column)| Ok((label.to_string(), values(column)?)))
        .collect::<Result<Vec<_>>>()?;
        let omegas = modalities
            .iter()
            .map(|m| Ok((m.clone(), values(&format!("omega_{}", m.to_lowercase()))?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            run_id: run_id.to_owned(),
            iterations: values("iteration")?,
            losses,
            omegas,
        })
    }
}

/// The moving average of `values` over `window` entries (shorter at the start).
pub fn moving_average(values: &[f64], window: usize) -> Vec<f64> {
    let window = window.max(1);
    let mut out = Vec::with_capacity(values.len());
    let mut sum = 0.0;
    for (i, v) in values.iter().enumerate() {
        sum += v;
        if i >= window {
            sum -= values[i - window];
        }
        out.push(sum / (i + 1).min(window) as f64);
    }
    out
}

const SERIES_COLOURS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
];

/// Curves over training iterations (or any other x).
pub struct Curves<'a> {
    /// The title.
    pub title: String,
    /// The x axis' label.
    pub x_label: &'a str,
    /// The y axis' label.
    pub y_label: &'a str,
    /// Iterations.
    pub x: &'a [f64],
    /// Named series.
    pub series: Vec<(String, Vec<f64>)>,
}

impl<'a> Curves<'a> {
    /// ω of each modality over training.
    pub fn omega(log: &'a TrainingLog) -> Self {
        Self {
            title: format!("Importance weights ω over training ({})", log.run_id),
            x_label: "iteration",
            y_label: "ω",
            x: &log.iterations,
            series: log.omegas.clone(),
        }
    }

    /// The loss terms over training, as moving averages over 1/50 of the run.
    pub fn losses(log: &'a TrainingLog) -> Self {
        let window = (log.iterations.len() / 50).max(1);
        Self {
            title: format!(
                "Training losses ({}, moving average over {window} iterations)",
                log.run_id
            ),
            x_label: "iteration",
            y_label: "loss",
            x: &log.iterations,
            series: log
                .losses
                .iter()
                .map(|(name, v)| (name.clone(), moving_average(v, window)))
                .collect(),
        }
    }
}

impl Figure for Curves<'_> {
    fn size(&self) -> (u32, u32) {
        (800, 480)
    }

    fn draw<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        area.fill(&WHITE).map_err(drawing)?;
        let finite = self
            .series
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .filter(|v| v.is_finite());
        let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        let (lo, hi) = if lo.is_finite() && hi > lo {
            let pad = 0.05 * (hi - lo);
            ((lo - pad).min(0.0).max(lo - pad), hi + pad)
        } else {
            (0.0, 1.0)
        };
        let x_max = self.x.last().copied().unwrap_or(1.0).max(1.0);
        let x_min = self.x.first().copied().unwrap_or(0.0).min(x_max - 1.0);
        let mut chart = ChartBuilder::on(area)
            .caption(&self.title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x_min..x_max, lo..hi)
            .map_err(drawing)?;
        chart
            .configure_mesh()
            .x_desc(self.x_label)
            .y_desc(self.y_label)
            .x_label_formatter(&|x| tick_label(*x))
            .draw()
            .map_err(drawing)?;
        for (i, (name, values)) in self.series.iter().enumerate() {
            let colour = SERIES_COLOURS[i % SERIES_COLOURS.len()];
            chart
                .draw_series(LineSeries::new(
                    self.x
                        .iter()
                        .zip(values)
                        .filter(|(_, v)| v.is_finite())
                        .map(|(&x, &v)| (x, v)),
                    colour.stroke_width(2),
                ))
                .map_err(drawing)?
                .label(name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(drawing)?;
        Ok(())
    }
}

/// A tick's label: whole numbers (iterations) without a decimal point, others as they are.
fn tick_label(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// The colour of a BraTS label: necrotic core red, oedema green, enhancing tumour yellow.
pub fn label_colour(label: u8) -> Option<(u8, u8, u8)> {
    match label {
        1 => Some((230, 40, 40)),
        2 => Some((40, 200, 60)),
        4 => Some((255, 225, 0)),
        _ => None,
    }
}

/// Grey levels of `image` between its 1st and 99th percentiles.
pub fn grey_levels(image: &[f32]) -> Vec<u8> {
    let mut sorted: Vec<f32> = image.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return vec![0; image.len()];
    }
    sorted.sort_by(f32::total_cmp);
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    let (lo, hi) = (at(0.01), at(0.99));
    let span = (hi - lo).max(f32::EPSILON);
    image
        .iter()
        .map(|&v| (((v - lo) / span).clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect()
}

/// One case's slice: every modality, then the reference and each prediction drawn over the
/// image of `background` (T1ce for BraTS).
pub struct SliceFigure<'a> {
    /// The slices.
    pub slices: &'a CaseSlices,
    /// Index of the modality the labels are drawn over.
    pub background: usize,
}

/// A panel of the slice figure: its title and RGB pixels, row-major.
type Panel = (String, Vec<(u8, u8, u8)>);

const PANEL: u32 = 180;
const PANEL_TITLE: u32 = 24;

impl SliceFigure<'_> {
    fn panels(&self) -> Vec<Panel> {
        let s = self.slices;
        let greys: Vec<Vec<u8>> = s.images.iter().map(|i| grey_levels(i)).collect();
        let grey = |g: &[u8]| g.iter().map(|&v| (v, v, v)).collect::<Vec<_>>();
        let background = &greys[self.background.min(greys.len() - 1)];
        let overlay = |labels: &[u8]| {
            labels
                .iter()
                .zip(background)
                .map(|(&l, &g)| match label_colour(l) {
                    Some((r, gr, b)) => {
                        let mix = |c: u8| ((0.35 * g as f32) + 0.65 * c as f32) as u8;
                        (mix(r), mix(gr), mix(b))
                    }
                    None => (g, g, g),
                })
                .collect::<Vec<_>>()
        };
        let mut panels: Vec<Panel> = s
            .modalities
            .iter()
            .zip(&greys)
            .map(|(name, g)| (name.clone(), grey(g)))
            .collect();
        panels.push(("reference".into(), overlay(&s.reference)));
        for (name, labels) in &s.predictions {
            panels.push((format!("from {name}"), overlay(labels)));
        }
        panels
    }

    fn columns(&self) -> u32 {
        (self.slices.modalities.len() as u32 + 1).max(1)
    }
}

impl Figure for SliceFigure<'_> {
    fn size(&self) -> (u32, u32) {
        let panels = self.slices.images.len() + 1 + self.slices.predictions.len();
        let rows = (panels as u32).div_ceil(self.columns());
        (self.columns() * PANEL, 40 + rows * (PANEL + PANEL_TITLE))
    }

    fn draw<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        area.fill(&WHITE).map_err(drawing)?;
        let s = self.slices;
        let title = format!("Case {}, slice {}", s.case, s.slice);
        area.draw(&Text::new(title, (10, 10), ("sans-serif", 18).into_font()))
            .map_err(drawing)?;
        let scale = (PANEL - 8) as f64 / s.height.max(s.width) as f64;
        let (h, w) = (
            ((s.height as f64 * scale) as u32).max(1),
            ((s.width as f64 * scale) as u32).max(1),
        );
        for (k, (name, pixels)) in self.panels().into_iter().enumerate() {
            let (row, col) = (k as u32 / self.columns(), k as u32 % self.columns());
            let (x0, y0) = (
                (col * PANEL + 4) as i32,
                (40 + row * (PANEL + PANEL_TITLE)) as i32,
            );
            area.draw(&Text::new(name, (x0, y0), ("sans-serif", 14).into_font()))
                .map_err(drawing)?;
            // Nearest-neighbour scaling of the slice to the panel.
            let mut rgb = Vec::with_capacity((h * w * 3) as usize);
            for y in 0..h {
                let sy = ((y as f64 / scale) as usize).min(s.height - 1);
                for x in 0..w {
                    let sx = ((x as f64 / scale) as usize).min(s.width - 1);
                    let (r, g, b) = pixels[sy * s.width + sx];
                    rgb.extend([r, g, b]);
                }
            }
            let image = BitMapElement::<(i32, i32), RGBPixel>::with_owned_buffer(
                (x0, y0 + PANEL_TITLE as i32 - 4),
                (w, h),
                rgb,
            )
            .ok_or_else(|| "the slice buffer has the wrong size".to_string())?;
            area.draw(&image).map_err(drawing)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_ticks_have_no_decimal_point() {
        assert_eq!(tick_label(100.0), "100");
        assert_eq!(tick_label(0.0), "0");
        assert_eq!(tick_label(-20.0), "-20");
        assert_eq!(tick_label(2.5), "2.5");
    }

    #[test]
    fn iteration_axes_read_as_whole_numbers() {
        let x: Vec<f64> = (0..=600).step_by(10).map(f64::from).collect();
        let curves = Curves {
            title: "ω".into(),
            x_label: "iteration",
            y_label: "ω",
            x: &x,
            series: vec![("FLAIR".into(), x.iter().map(|v| v / 600.0).collect())],
        };
        let dir = tempfile::tempdir().unwrap();
        let [_, svg] = save(&curves, &dir.path().join("omega")).unwrap();
        let svg = std::fs::read_to_string(svg).unwrap();
        // The SVG backend writes each text on a line of its own between its tags.
        let texts: Vec<&str> = svg.lines().filter(|l| !l.starts_with('<')).collect();
        assert!(
            texts.contains(&"100") && texts.contains(&"500"),
            "{texts:?}"
        );
        assert!(
            !texts.iter().any(|t| t.ends_with(".0") && t.len() > 3),
            "{texts:?}"
        );
    }

    #[test]
    fn moving_averages_shorten_at_the_start() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(moving_average(&v, 2), vec![1.0, 1.5, 2.5, 3.5, 4.5]);
        assert_eq!(moving_average(&v, 1), v.to_vec());
        assert_eq!(moving_average(&v, 10), vec![1.0, 1.5, 2.0, 2.5, 3.0]);
    }

    #[test]
    fn grey_levels_span_the_percentiles() {
        let image: Vec<f32> = (0..=100).map(|i| i as f32).collect();
        let grey = grey_levels(&image);
        assert_eq!((grey[0], grey[1], grey[99], grey[100]), (0, 0, 255, 255));
        assert_eq!(grey[50], 128);
        assert!(
            grey_levels(&[3.0; 4]).iter().all(|&g| g == 0),
            "a flat image"
        );
    }

    #[test]
    fn labels_have_distinct_colours_and_background_none() {
        assert_eq!(label_colour(0), None);
        let colours: Vec<_> = [1, 2, 4].map(|l| label_colour(l).unwrap()).to_vec();
        assert!(colours[0] != colours[1] && colours[1] != colours[2]);
    }
}
