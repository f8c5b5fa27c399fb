//! The Pareto plot `policy.png`: one panel per trace, agent-hours as a ratio to the oracle
//! (x) against wait p95 (y, log scale), one coloured square per policy, the goal region
//! (≤ 1.25 × oracle, ≤ boot + 10 s) shaded.
//!
//! Drawn on a plain RGB canvas with a built-in 5×7 bitmap font and encoded as PNG with
//! `flate2` (already a dependency): no plotting crate, no system fonts, nothing to download,
//! so it renders the same on any clean machine.

use std::io::Write;

use super::Bench;

const PANEL_W: usize = 420;
const PANEL_H: usize = 330;
const COLS: usize = 3;
const LEGEND_H: usize = 70;
const MARGIN_L: usize = 70;
const MARGIN_B: usize = 50;
const MARGIN_T: usize = 34;
const MARGIN_R: usize = 20;

pub(crate) type Rgb = [u8; 3];
pub(crate) const WHITE: Rgb = [255, 255, 255];
pub(crate) const BLACK: Rgb = [0, 0, 0];
pub(crate) const GREY: Rgb = [200, 200, 200];
const GOAL: Rgb = [222, 245, 222];

/// Each policy's colour, in report order; others are grey.
const COLOURS: [(&str, Rgb); 6] = [
    ("oracle", [120, 120, 120]),
    ("longshore", [214, 39, 40]),
    ("static", [31, 119, 180]),
    ("jenkins-ec2", [255, 127, 14]),
    ("buildkite", [44, 160, 44]),
    ("netflix", [148, 103, 189]),
];

/// A plain RGB canvas (also drawn on by the demo's timeline).
pub(crate) struct Canvas {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

impl Canvas {
    pub(crate) fn new(width: usize, height: usize) -> Canvas {
        Canvas {
            width,
            height,
            pixels: WHITE.repeat(width * height),
        }
    }

    pub(crate) fn set(&mut self, x: i64, y: i64, colour: Rgb) {
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            let at = (y as usize * self.width + x as usize) * 3;
            self.pixels[at..at + 3].copy_from_slice(&colour);
        }
    }

    pub(crate) fn rect(&mut self, x: i64, y: i64, w: i64, h: i64, colour: Rgb) {
        for dy in 0..h {
            for dx in 0..w {
                self.set(x + dx, y + dy, colour);
            }
        }
    }

    pub(crate) fn hline(&mut self, x0: i64, x1: i64, y: i64, colour: Rgb) {
        self.rect(x0, y, x1 - x0 + 1, 1, colour);
    }

    pub(crate) fn vline(&mut self, x: i64, y0: i64, y1: i64, colour: Rgb) {
        self.rect(x, y0, 1, y1 - y0 + 1, colour);
    }

    /// Text at `scale` × the 5×7 font, top-left at (x, y).
    pub(crate) fn text(&mut self, x: i64, y: i64, text: &str, scale: i64, colour: Rgb) {
        for (n, c) in text.chars().enumerate() {
            let rows = glyph(c);
            let left = x + n as i64 * 6 * scale;
            for (row, bits) in rows.iter().enumerate() {
                for col in 0..5 {
                    if bits & (0x10 >> col) != 0 {
                        self.rect(
                            left + col * scale,
                            y + row as i64 * scale,
                            scale,
                            scale,
                            colour,
                        );
                    }
                }
            }
        }
    }

    pub(crate) fn text_width(text: &str, scale: i64) -> i64 {
        text.chars().count() as i64 * 6 * scale
    }

    pub(crate) fn png(&self) -> Vec<u8> {
        let mut raw = Vec::with_capacity((self.width * 3 + 1) * self.height);
        for row in self.pixels.chunks(self.width * 3) {
            raw.push(0); // filter: none
            raw.extend_from_slice(row);
        }
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        // Writing to a Vec cannot fail.
        let _ = zlib.write_all(&raw);
        let idat = zlib.finish().unwrap_or_default();
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&(self.width as u32).to_be_bytes());
        ihdr.extend_from_slice(&(self.height as u32).to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, no interlace
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        for (kind, data) in [(*b"IHDR", ihdr), (*b"IDAT", idat), (*b"IEND", Vec::new())] {
            png.extend_from_slice(&(data.len() as u32).to_be_bytes());
            let mut body = kind.to_vec();
            body.extend_from_slice(&data);
            png.extend_from_slice(&body);
            png.extend_from_slice(&crc32(&body).to_be_bytes());
        }
        png
    }
}

/// Tick marks and whole-number labels under an x axis at `bottom`, every `step` up to `max`.
pub(crate) fn x_ticks(
    canvas: &mut Canvas,
    px: &dyn Fn(f64) -> i64,
    bottom: i64,
    max: f64,
    step: f64,
) {
    let mut tick = 0.0;
    while tick <= max {
        let x = px(tick);
        canvas.vline(x, bottom, bottom + 4, BLACK);
        let label = format!("{tick:.0}");
        canvas.text(
            x - Canvas::text_width(&label, 1) / 2,
            bottom + 8,
            &label,
            1,
            BLACK,
        );
        tick += step;
    }
}

/// The CRC-32 PNG chunks carry (ISO 3309, reflected polynomial 0xEDB88320).
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The plot of a run, as PNG bytes.
pub fn pareto_png(bench: &Bench) -> Vec<u8> {
    let panels = bench.traces.len().max(1);
    let rows = panels.div_ceil(COLS);
    let cols = panels.min(COLS);
    let mut canvas = Canvas::new(cols * PANEL_W, rows * PANEL_H + LEGEND_H);
    let goal_wait = bench.params.wait_goal_ms() as f64 / 1000.0;
    for (index, trace) in bench.traces.iter().enumerate() {
        let ox = ((index % COLS) * PANEL_W) as i64;
        let oy = ((index / COLS) * PANEL_H) as i64;
        let points: Vec<(f64, f64, Rgb)> = trace
            .results
            .iter()
            .map(|r| (r.agent_hours_ratio, r.wait_p95_s, colour_of(&r.policy)))
            .collect();
        panel(&mut canvas, ox, oy, &trace.trace, &points, goal_wait);
    }
    legend(&mut canvas, (rows * PANEL_H) as i64);
    canvas.png()
}

fn colour_of(policy: &str) -> Rgb {
    COLOURS
        .iter()
        .find(|(name, _)| *name == policy)
        .map_or(GREY, |(_, c)| *c)
}

/// One trace's panel: axes, ticks, goal region, points.
fn panel(
    canvas: &mut Canvas,
    ox: i64,
    oy: i64,
    title: &str,
    points: &[(f64, f64, Rgb)],
    goal_wait: f64,
) {
    let (left, top) = (ox + MARGIN_L as i64, oy + MARGIN_T as i64);
    let (w, h) = (
        (PANEL_W - MARGIN_L - MARGIN_R) as i64,
        (PANEL_H - MARGIN_T - MARGIN_B) as i64,
    );
    let bottom = top + h;
    let x_max = points
        .iter()
        .map(|p| p.0)
        .fold(1.5f64, f64::max)
        .mul_add(1.1, 0.0)
        .ceil();
    let y_max = points
        .iter()
        .map(|p| (1.0 + p.1).log10())
        .fold((1.0 + goal_wait).log10(), f64::max)
        .ceil()
        .max(2.0);
    let px = |x: f64| left + ((x / x_max) * w as f64).round() as i64;
    let py = |wait: f64| bottom - (((1.0 + wait).log10() / y_max) * h as f64).round() as i64;

    canvas.rect(
        left,
        py(goal_wait),
        px(1.25) - left,
        bottom - py(goal_wait),
        GOAL,
    );
    canvas.text(
        ox + (PANEL_W as i64 - Canvas::text_width(title, 2)) / 2,
        oy + 8,
        &title.to_uppercase(),
        2,
        BLACK,
    );
    canvas.hline(left, left + w, bottom, BLACK);
    canvas.vline(left, top, bottom, BLACK);
    let step = (x_max / 5.0).ceil().max(1.0);
    x_ticks(canvas, &px, bottom, x_max, step);
    canvas.text(left + w / 2 - 80, bottom + 24, "AGENT-H / ORACLE", 2, BLACK);
    for power in 0..=y_max as i32 {
        // 0 s, then 10 s, 100 s, …: the axis is log10(1 + wait).
        let wait = if power == 0 { 0.0 } else { 10f64.powi(power) };
        let y = py(wait);
        canvas.hline(left - 4, left, y, BLACK);
        let label = format!("{wait:.0}S");
        canvas.text(
            left - 8 - Canvas::text_width(&label, 1),
            y - 3,
            &label,
            1,
            BLACK,
        );
    }
    canvas.text(ox + 4, top - 14, "WAIT P95", 1, BLACK);
    // longshore last, outlined, so a peer on the same spot does not hide it.
    let longshore = colour_of("longshore");
    let mut ordered: Vec<&(f64, f64, Rgb)> = points.iter().collect();
    ordered.sort_by_key(|p| p.2 == longshore);
    for &&(x, wait, colour) in &ordered {
        let (cx, cy) = (px(x.min(x_max)), py(wait));
        if colour == longshore {
            canvas.rect(cx - 7, cy - 7, 15, 15, BLACK);
        }
        canvas.rect(cx - 5, cy - 5, 11, 11, colour);
    }
}

fn legend(canvas: &mut Canvas, top: i64) {
    let mut x = 20;
    for (name, colour) in COLOURS {
        canvas.rect(x, top + 20, 14, 14, colour);
        canvas.text(x + 20, top + 20, &name.to_uppercase(), 2, BLACK);
        x += 20 + Canvas::text_width(name, 2) + 30;
    }
    canvas.text(
        20,
        top + 46,
        "SHADED: GOAL (AGENT-H <= 1.25 X ORACLE, WAIT P95 <= BOOT + 10 S)",
        1,
        BLACK,
    );
}

/// The 5×7 glyph of a character (lower case drawn as upper case; unknown as '?').
fn glyph(c: char) -> [u8; 7] {
    match c.to_ascii_uppercase() {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        'A' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        ' ' => [0; 7],
        '.' => [0, 0, 0, 0, 0, 0x0C, 0x0C],
        ',' => [0, 0, 0, 0, 0x0C, 0x04, 0x08],
        '-' => [0, 0, 0, 0x1F, 0, 0, 0],
        '+' => [0, 0x04, 0x04, 0x1F, 0x04, 0x04, 0],
        ':' => [0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0],
        '/' => [0, 0x01, 0x02, 0x04, 0x08, 0x10, 0],
        '%' => [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        '=' => [0, 0, 0x1F, 0, 0x1F, 0, 0],
        '<' => [0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02],
        '>' => [0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08],
        _ => [0x0E, 0x11, 0x01, 0x02, 0x04, 0, 0x04],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn png_has_signature_and_header() {
        let png = Canvas::new(3, 2).png();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        assert_eq!(&png[16..24], &[0, 0, 0, 3, 0, 0, 0, 2]);
        assert!(png.ends_with(&[0xAE, 0x42, 0x60, 0x82]), "IEND's CRC");
    }
}
