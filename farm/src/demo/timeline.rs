//! `out/demo/timeline.png`: the queue and the agents by state (booting, idle, busy) over the
//! run, one sample per progress tick, with a marker for every injected fault (a vertical line
//! where it starts, a shaded band while it lasts).
//!
//! Drawn on the policy simulator's dependency-free canvas (`simulate::plot`).

use crate::simulate::plot::{BLACK, Canvas, GREY, Rgb, x_ticks};

use super::faults::FaultRecord;

const WIDTH: usize = 1000;
const HEIGHT: usize = 520;
const LEFT: i64 = 60;
const RIGHT: i64 = 20;
const TOP: i64 = 40;
const BOTTOM: i64 = 150;

const QUEUE: Rgb = [214, 39, 40];
const BOOTING: Rgb = [255, 127, 14];
const IDLE: Rgb = [44, 160, 44];
const BUSY: Rgb = [31, 119, 180];
const OFFLINE: Rgb = [127, 127, 127];
const FAULT: Rgb = [148, 103, 189];
const BAND: Rgb = [238, 232, 246];

/// A series: its name, colour and value in a sample.
type Series = (&'static str, Rgb, fn(&Sample) -> usize);

/// One look at the farm, at `t_s` wall seconds from the start of the replay.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct Sample {
    pub t_s: f64,
    pub queued: usize,
    pub booting: usize,
    pub idle: usize,
    pub busy: usize,
    pub offline: usize,
}

/// The timeline as PNG bytes.
pub fn timeline_png(samples: &[Sample], faults: &[FaultRecord]) -> Vec<u8> {
    let mut canvas = Canvas::new(WIDTH, HEIGHT);
    let (w, h) = (WIDTH as i64 - LEFT - RIGHT, HEIGHT as i64 - TOP - BOTTOM);
    let bottom = TOP + h;
    let t_max = samples
        .iter()
        .map(|s| s.t_s)
        .chain(faults.iter().map(|f| f.until_s.unwrap_or(f.at_s)))
        .fold(10.0f64, f64::max)
        .ceil();
    let y_max = samples
        .iter()
        .map(|s| s.queued.max(s.booting + s.idle + s.busy + s.offline))
        .max()
        .unwrap_or(0)
        .max(4) as f64
        * 1.1;
    let px = |t: f64| LEFT + ((t / t_max) * w as f64).round() as i64;
    let py = |v: f64| bottom - ((v / y_max) * h as f64).round() as i64;

    for fault in faults {
        if let Some(until) = fault.until_s {
            let (x0, x1) = (px(fault.at_s), px(until));
            canvas.rect(x0, TOP, (x1 - x0).max(1), h, BAND);
        }
    }
    canvas.text(
        LEFT,
        10,
        "LONGSHORE DEMO: QUEUE AND AGENTS BY STATE",
        2,
        BLACK,
    );
    axes(&mut canvas, t_max, y_max, px, py, bottom);

    let series: [Series; 5] = [
        ("QUEUE", QUEUE, |s| s.queued),
        ("BOOTING", BOOTING, |s| s.booting),
        ("IDLE", IDLE, |s| s.idle),
        ("BUSY", BUSY, |s| s.busy),
        ("OFFLINE", OFFLINE, |s| s.offline),
    ];
    for (_, colour, value) in series {
        step_line(&mut canvas, samples, colour, value, px, py);
    }
    for (n, fault) in faults.iter().enumerate() {
        let x = px(fault.at_s);
        for dy in (0..h).step_by(6) {
            canvas.vline(x, TOP + dy, TOP + dy + 3, FAULT);
        }
        let tag = format!("F{}", n + 1);
        canvas.text(x + 3, TOP + 4 + (n as i64 % 4) * 10, &tag, 1, FAULT);
    }
    legend(&mut canvas, &series.map(|(name, colour, _)| (name, colour)));
    canvas.text(
        LEFT + 420,
        bottom + 62,
        "A MASTER THAT CANNOT BE READ IS DRAWN AS LAST SEEN",
        1,
        BLACK,
    );
    for (n, fault) in faults.iter().enumerate() {
        let line = format!("F{} AT {:.0}S: {}", n + 1, fault.at_s, fault.kind.label());
        canvas.text(LEFT, bottom + 62 + n as i64 * 12, &line, 1, FAULT);
    }
    canvas.png()
}

fn axes(
    canvas: &mut Canvas,
    t_max: f64,
    y_max: f64,
    px: impl Fn(f64) -> i64,
    py: impl Fn(f64) -> i64,
    bottom: i64,
) {
    canvas.hline(LEFT, px(t_max), bottom, BLACK);
    canvas.vline(LEFT, TOP, bottom, BLACK);
    let t_step = nice_step(t_max);
    x_ticks(canvas, &px, bottom, t_max, t_step);
    canvas.text(px(t_max) - 130, bottom + 20, "WALL SECONDS", 1, BLACK);
    let y_step = nice_step(y_max);
    let mut v = 0.0;
    while v <= y_max {
        let y = py(v);
        canvas.hline(LEFT - 4, LEFT, y, BLACK);
        if v > 0.0 {
            canvas.hline(LEFT + 1, px(t_max), y, GREY);
        }
        let label = format!("{v:.0}");
        canvas.text(
            LEFT - 8 - Canvas::text_width(&label, 1),
            y - 3,
            &label,
            1,
            BLACK,
        );
        v += y_step;
    }
}

/// A round step giving about five to ten ticks.
fn nice_step(max: f64) -> f64 {
    [1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0]
        .into_iter()
        .find(|step| max / step <= 10.0)
        .unwrap_or(300.0)
}

/// The series as steps (counts hold until the next sample), two pixels thick.
fn step_line(
    canvas: &mut Canvas,
    samples: &[Sample],
    colour: Rgb,
    value: fn(&Sample) -> usize,
    px: impl Fn(f64) -> i64,
    py: impl Fn(f64) -> i64,
) {
    for pair in samples.windows(2) {
        let (x0, x1) = (px(pair[0].t_s), px(pair[1].t_s));
        let (y0, y1) = (py(value(&pair[0]) as f64), py(value(&pair[1]) as f64));
        for thick in 0..2 {
            canvas.hline(x0, x1, y0 + thick, colour);
            canvas.vline(x1 + thick, y0.min(y1), y0.max(y1), colour);
        }
    }
}

fn legend(canvas: &mut Canvas, series: &[(&str, Rgb)]) {
    let top = HEIGHT as i64 - BOTTOM + 36;
    let mut x = LEFT;
    for (name, colour) in series {
        canvas.rect(x, top, 14, 14, *colour);
        canvas.text(x + 20, top, name, 2, BLACK);
        x += 20 + Canvas::text_width(name, 2) + 30;
    }
    canvas.rect(x, top, 14, 14, BAND);
    canvas.vline(x + 7, top, top + 14, FAULT);
    canvas.text(x + 20, top, "FAULT", 2, BLACK);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::faults::FaultKind;

    #[test]
    fn draws_a_png_with_series_and_fault_markers() {
        let samples: Vec<Sample> = (0..20)
            .map(|n| Sample {
                t_s: n as f64,
                queued: n % 5,
                booting: 1,
                idle: n % 3,
                busy: n % 4,
                offline: 0,
            })
            .collect();
        let faults = vec![FaultRecord {
            at_s: 5.0,
            until_s: Some(9.0),
            kind: FaultKind::MasterErrors,
            detail: "master-a answers 500".to_string(),
        }];
        let png = timeline_png(&samples, &faults);
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
        let plain = timeline_png(&samples, &[]);
        assert_ne!(png, plain, "the fault marker changes the picture");
    }

    #[test]
    fn steps_are_round() {
        assert_eq!(nice_step(8.0), 1.0);
        assert_eq!(nice_step(150.0), 20.0);
    }
}
