//! Server-drawn bar charts with plotters: SVG for pages, PNG for emails.
//!
//! The bundled DejaVu Sans (`assets/fonts/`) is registered once as `sans-serif`, so text
//! is measured and (in PNG) drawn the same on every machine, accents included; the
//! SVG names the family and lets the browser draw the glyphs. Axis numbers are French
//! (`1 234,5`). This module draws only: it must never fetch data nor decide periods.

use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use crate::format;

/// DejaVu Sans, bundled with its licence in `assets/fonts/`.
static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// Width of a chart, pixels.
pub const WIDTH: u32 = 760;
/// Height of a chart, pixels.
pub const HEIGHT: u32 = 300;

/// The fill colour of bars (`#2F6FA8`), as the SVG writes it.
pub const BAR_COLOUR: RGBColor = RGBColor(0x2F, 0x6F, 0xA8);

/// Why a chart could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// The bundled font could not be loaded.
    #[error("cannot register the bundled DejaVu Sans font")]
    Font,
    /// plotters failed while drawing.
    #[error("cannot draw chart {title:?}: {message}")]
    Draw {
        /// The chart's title.
        title: String,
        /// plotters' message.
        message: String,
    },
    /// The PNG encoder failed.
    #[error("cannot encode chart {title:?} as PNG: {message}")]
    Png {
        /// The chart's title.
        title: String,
        /// The encoder's message.
        message: String,
    },
}

/// Registers the bundled font once per process.
fn ensure_font() -> Result<(), ChartError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = REGISTERED.get_or_init(|| {
        register_font("sans-serif", FontStyle::Normal, DEJAVU_SANS).is_ok()
            && register_font("sans-serif", FontStyle::Bold, DEJAVU_SANS).is_ok()
    });
    if *ok { Ok(()) } else { Err(ChartError::Font) }
}

/// A bar chart as an SVG document (`<svg …>`), one bar per `(label, value)`; a `None`
/// value leaves a gap (no data for that period).
pub fn bar_chart_svg(
    title: &str,
    unit: &str,
    bars: &[(String, Option<f64>)],
) -> Result<String, ChartError> {
    ensure_font()?;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        draw_bars(&root, title, unit, bars).map_err(|message| ChartError::Draw {
            title: title.to_string(),
            message,
        })?;
    }
    Ok(svg)
}

/// The same chart as a PNG image (for emails), drawn with the bundled font.
pub fn bar_chart_png(
    title: &str,
    unit: &str,
    bars: &[(String, Option<f64>)],
) -> Result<Vec<u8>, ChartError> {
    ensure_font()?;
    let mut rgb = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (WIDTH, HEIGHT)).into_drawing_area();
        draw_bars(&root, title, unit, bars).map_err(|message| ChartError::Draw {
            title: title.to_string(),
            message,
        })?;
    }
    let png_err = |e: png::EncodingError| ChartError::Png {
        title: title.to_string(),
        message: e.to_string(),
    };
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, WIDTH, HEIGHT);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(png_err)?;
        writer.write_image_data(&rgb).map_err(png_err)?;
        writer.finish().map_err(png_err)?;
    }
    Ok(out)
}

fn draw_bars<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    unit: &str,
    bars: &[(String, Option<f64>)],
) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let values = || {
        bars.iter()
            .filter_map(|(_, v)| *v)
            .filter(|v| v.is_finite())
    };
    let max = values().fold(0.0_f64, f64::max);
    let min = values().fold(0.0_f64, f64::min);
    let top = if max > 0.0 { max * 1.1 } else { 1.0 };
    let bottom = if min < 0.0 { min * 1.1 } else { 0.0 };
    // Enough decimals to tell neighbouring ticks apart (about six ticks on the axis).
    let tick = (top - bottom) / 6.0;
    let decimals = if tick >= 1.0 {
        0
    } else {
        ((-tick.log10()).ceil() as usize).min(4)
    };
    // An integer range is inclusive in plotters: segments 0..=last, one per bar (at
    // least two segments: a one-segment axis is degenerate).
    let last = i32::try_from(bars.len().max(2) - 1).unwrap_or(i32::MAX);
    let step = bars.len().div_ceil(12).max(1);

    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 17).into_font())
        .margin(10)
        .x_label_area_size(28)
        .y_label_area_size(70)
        .build_cartesian_2d((0..last).into_segmented(), bottom..top)
        .map_err(e)?;
    let label_of = |v: &SegmentValue<i32>| match v {
        SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => usize::try_from(*i)
            .ok()
            .filter(|i| i % step == 0)
            .and_then(|i| bars.get(i))
            .map(|(label, _)| label.clone())
            .unwrap_or_default(),
        SegmentValue::Last => String::new(),
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(bars.len().max(1))
        .x_label_formatter(&label_of)
        .y_labels(6)
        .y_label_formatter(&|v| format::number(*v, decimals))
        .y_desc(unit)
        .label_style(("sans-serif", 12))
        .axis_desc_style(("sans-serif", 13))
        .light_line_style(WHITE)
        .draw()
        .map_err(e)?;

    if values().next().is_none() {
        let grey = BLACK.mix(0.6);
        let style = TextStyle::from(("sans-serif", 16).into_font())
            .color(&grey)
            .pos(plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Center,
                plotters::style::text_anchor::VPos::Center,
            ));
        let (w, h) = root.dim_in_pixel();
        root.draw_text("Aucune donnée", &style, (w as i32 / 2, h as i32 / 2))
            .map_err(e)?;
    } else {
        chart
            .draw_series(bars.iter().enumerate().filter_map(|(i, (_, v))| {
                let v = v.filter(|v| v.is_finite())?;
                let i = i32::try_from(i).ok()?;
                let mut bar = Rectangle::new(
                    [
                        (SegmentValue::Exact(i), 0.0),
                        (SegmentValue::Exact(i + 1), v),
                    ],
                    BAR_COLOUR.filled(),
                );
                bar.set_margin(0, 0, 2, 2);
                Some(bar)
            }))
            .map_err(e)?;
    }
    root.present().map_err(e)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bars(values: &[Option<f64>]) -> Vec<(String, Option<f64>)> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("{:02}/11", i + 1), *v))
            .collect()
    }

    fn bar_count(svg: &str) -> usize {
        svg.matches("fill=\"#2F6FA8\"").count()
    }

    #[test]
    fn an_svg_chart_has_one_rectangle_per_known_value() {
        let svg = bar_chart_svg("Électricité", "kWh", &bars(&[Some(1.0), None, Some(3.5)]))
            .expect("chart");
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        assert_eq!(bar_count(&svg), 2, "{svg}");
        assert!(svg.contains("Électricité"));
        assert!(svg.contains("kWh"));
    }

    #[test]
    fn y_axis_numbers_are_french() {
        let svg = bar_chart_svg("Eau", "m³", &bars(&[Some(2000.0), Some(1500.5)])).expect("chart");
        // 2 200 is the top of the axis (max × 1,1): some tick has a grouped thousand.
        assert!(svg.contains('\u{202F}'), "{svg}");
    }

    #[test]
    fn small_values_get_distinct_y_tick_labels() {
        let svg = bar_chart_svg("Eau", "m³", &bars(&[Some(0.23), Some(0.09)])).expect("chart");
        let labels: Vec<&str> = svg
            .split("</text>")
            .filter_map(|t| t.rsplit('>').next().map(str::trim))
            .filter(|t| t.starts_with("0,"))
            .collect();
        let distinct: std::collections::HashSet<_> = labels.iter().collect();
        assert!(labels.len() >= 3, "{labels:?}");
        assert_eq!(
            distinct.len(),
            labels.len(),
            "duplicate tick labels: {labels:?}"
        );
    }

    #[test]
    fn a_chart_without_data_says_so() {
        let svg = bar_chart_svg("Gaz", "m³", &bars(&[None, None])).expect("chart");
        assert!(svg.contains("Aucune donnée"));
        assert_eq!(bar_count(&svg), 0);
    }

    #[test]
    fn the_png_variant_is_a_png_image() {
        let png =
            bar_chart_png("Électricité", "kWh", &bars(&[Some(1.0), Some(2.0)])).expect("chart");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert!(png.len() > 1000);
    }
}
