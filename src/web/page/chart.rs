//! Geometry for the SVG charts we draw ourselves: linear scales, round tick values, the
//! colour ramp for projections, number formatting. No DOM here, so it is tested natively.

/// Maps the domain `d0..d1` linearly onto the range `r0..r1` (pixels; `r1 < r0` flips, as a
/// y axis does).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scale {
    pub d0: f32,
    pub d1: f32,
    pub r0: f32,
    pub r1: f32,
}

impl Scale {
    pub fn new(domain: (f32, f32), range: (f32, f32)) -> Self {
        Self {
            d0: domain.0,
            d1: domain.1,
            r0: range.0,
            r1: range.1,
        }
    }

    pub fn map(&self, v: f32) -> f32 {
        let span = self.d1 - self.d0;
        if span.abs() < f32::EPSILON {
            return (self.r0 + self.r1) / 2.0;
        }
        self.r0 + (v - self.d0) / span * (self.r1 - self.r0)
    }
}

/// A zoomed and panned view of a chart: magnification `k` (1 = everything, at most
/// [`Zoom::MAX`]) and the view's centre as fractions of the full extent on each axis (0.5 =
/// the middle). Always shows a part of the full extent: the centre is kept where the view
/// stays inside it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Zoom {
    pub k: f32,
    pub cx: f32,
    pub cy: f32,
}

impl Zoom {
    pub const FULL: Zoom = Zoom {
        k: 1.0,
        cx: 0.5,
        cy: 0.5,
    };
    pub const MAX: f32 = 16.0;

    /// The part of `lo..hi` in view along an axis whose centre is at fraction `c`.
    pub fn window(self, (lo, hi): (f32, f32), c: f32) -> (f32, f32) {
        let span = hi - lo;
        let mid = lo + span * c;
        (mid - span / self.k / 2.0, mid + span / self.k / 2.0)
    }

    /// Magnified by `factor` (below 1 zooms out), about the same centre.
    pub fn zoomed(self, factor: f32) -> Self {
        Self {
            k: (self.k * factor).clamp(1.0, Self::MAX),
            ..self
        }
        .kept_inside()
    }

    /// Moved by `dx`, `dy` fractions of the view (positive: toward larger values).
    pub fn panned(self, dx: f32, dy: f32) -> Self {
        Self {
            cx: self.cx + dx / self.k,
            cy: self.cy + dy / self.k,
            ..self
        }
        .kept_inside()
    }

    fn kept_inside(self) -> Self {
        let half = 0.5 / self.k;
        Self {
            cx: self.cx.clamp(half, 1.0 - half),
            cy: self.cy.clamp(half, 1.0 - half),
            ..self
        }
    }
}

/// The smallest interval holding every finite value, widened by `pad` of its span on each
/// side; a single value (or none) gets a unit-wide interval around it (or 0).
pub fn extent(values: impl IntoIterator<Item = f32>, pad: f32) -> (f32, f32) {
    let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
    for v in values.into_iter().filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        return (-1.0, 1.0);
    }
    let span = hi - lo;
    if span < 1e-6 {
        return (lo - 0.5, hi + 0.5);
    }
    (lo - span * pad, hi + span * pad)
}

/// About `count` round tick values (1, 2 or 5 times a power of ten apart) inside `lo..hi`.
pub fn ticks(lo: f32, hi: f32, count: usize) -> Vec<f32> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo || count == 0 {
        return Vec::new();
    }
    let raw = (hi - lo) / count as f32;
    let power = 10f32.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * power);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last)
        .map(|i| i as f32 * step)
        .map(|v| if v.abs() < step * 1e-6 { 0.0 } else { v })
        .collect()
}

/// Labels for `ticks` with as many decimals as their spacing needs ("0", "0.5", "-10").
pub fn tick_labels(ticks: &[f32]) -> Vec<String> {
    let step = match ticks {
        [a, b, ..] => (b - a).abs(),
        _ => 1.0,
    };
    let decimals = if step > 0.0 {
        (-step.log10().floor()).max(0.0) as usize
    } else {
        0
    };
    ticks
        .iter()
        .map(|t| {
            let s = format!("{t:.decimals$}");
            if s.starts_with('-') && s[1..].chars().all(|c| c == '0' || c == '.') {
                s[1..].to_string()
            } else {
                s
            }
        })
        .collect()
}

/// Colour for a projection relative to `scale` (the largest magnitude shown): toward the
/// Assistant (positive) blue, toward role-play (negative) orange, grey near 0. The two ends
/// differ in lightness too, so the ramp survives red-green colour blindness and greyscale.
pub fn projection_colour(p: f32, scale: f32) -> String {
    let t = if scale > 0.0 && p.is_finite() {
        (p / scale).clamp(-1.0, 1.0)
    } else {
        0.0
    };
    let grey = (150.0, 150.0, 150.0);
    let end = if t >= 0.0 {
        (33.0, 102.0, 172.0)
    } else {
        (230.0, 97.0, 1.0)
    };
    let a = t.abs();
    let mix = |g: f32, e: f32| (g + (e - g) * a).round() as u8;
    format!(
        "rgb({},{},{})",
        mix(grey.0, end.0),
        mix(grey.1, end.1),
        mix(grey.2, end.2)
    )
}

/// Short, readable numbers for axes and labels: 3 significant digits, no "-0".
pub fn fmt(v: f32) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let a = v.abs();
    let s = if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    };
    if s.starts_with('-') && s[1..].chars().all(|c| c == '0' || c == '.') {
        s[1..].to_string()
    } else {
        s
    }
}

/// A point's place on one of the map's dimensions: PC `dim` of `pcs` for `dim < n_pcs`, else
/// its projection on the Assistant Axis, the drift chart's measure (on that dimension a reply's
/// trail point and its drift point agree).
pub fn map_coord(pcs: &[f32], projection: f32, dim: usize, n_pcs: usize) -> f32 {
    if dim >= n_pcs {
        projection
    } else {
        pcs.get(dim).copied().unwrap_or(0.0)
    }
}

/// A map dimension's name: "PC2", or "Assistant Axis" past the PCs.
pub fn dim_name(dim: usize, n_pcs: usize) -> String {
    if dim >= n_pcs {
        "Assistant Axis".into()
    } else {
        format!("PC{}", dim + 1)
    }
}

/// " ± 10.4 (one reply's spread)": how far one reply strays from its role's mean (the drift
/// chart's whiskers, a role's hover); nothing without a spread.
pub fn spread_text(sd: Option<f32>) -> String {
    sd.filter(|s| *s > 0.0).map_or(String::new(), |s| {
        format!(" ± {} (one reply's spread)", fmt(s))
    })
}

/// A cosine-like figure's interval as the captions give it: "(0.42 to 0.87)".
pub fn interval(i: &crate::science::Interval) -> String {
    format!("({:.2} to {:.2})", i.lo, i.hi)
}

/// `"x1,y1 x2,y2 ..."` for an SVG polyline.
pub fn polyline(points: &[(f32, f32)]) -> String {
    points
        .iter()
        .map(|(x, y)| format!("{x:.1},{y:.1}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// "12.3 MB" for byte counts shown to people (decimal units, as download sizes are quoted).
pub fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_map_reads_pcs_then_the_axis() {
        let pcs = [1.0, -2.0, 3.0];
        assert_eq!(map_coord(&pcs, 9.5, 1, 3), -2.0);
        assert_eq!(map_coord(&pcs, 9.5, 3, 3), 9.5);
        assert_eq!(
            map_coord(&[], 9.5, 0, 3),
            0.0,
            "a point without PCs sits at 0"
        );
        assert_eq!(
            (dim_name(0, 3), dim_name(3, 3)),
            ("PC1".into(), "Assistant Axis".into())
        );
    }

    #[test]
    fn a_spread_reads_as_plus_minus() {
        assert_eq!(spread_text(Some(4.123)), " ± 4.12 (one reply's spread)");
        assert_eq!(spread_text(Some(0.0)), "");
        assert_eq!(spread_text(None), "");
    }

    #[test]
    fn intervals_read_as_a_range() {
        let i = crate::science::Interval {
            value: 0.756,
            lo: 0.4149,
            hi: 0.8714,
        };
        assert_eq!(interval(&i), "(0.41 to 0.87)");
    }

    #[test]
    fn zoom_windows_stay_inside_the_extent() {
        let full = (-2.0, 6.0);
        assert_eq!(Zoom::FULL.window(full, Zoom::FULL.cx), full);
        let z = Zoom::FULL.zoomed(4.0);
        assert_eq!(
            z.window(full, z.cx),
            (1.0, 3.0),
            "a quarter of the span, centred"
        );
        // Panned far past the right edge: the view stops at it.
        let z = z.panned(10.0, -10.0);
        assert_eq!(z.window(full, z.cx), (4.0, 6.0));
        assert_eq!(z.window(full, z.cy), (-2.0, 0.0));
        // One view's width to the left, from the right edge.
        let back = z.panned(-1.0, 0.0);
        assert_eq!(back.window(full, back.cx), (2.0, 4.0));
        // Zooming out past everything is everything again, centred.
        let out = back.zoomed(0.01);
        assert_eq!(out, Zoom::FULL);
        assert_eq!(Zoom::FULL.zoomed(1000.0).k, Zoom::MAX);
    }

    #[test]
    fn scale_maps_ends_and_flips() {
        let s = Scale::new((0.0, 10.0), (300.0, 20.0));
        assert_eq!(s.map(0.0), 300.0);
        assert_eq!(s.map(10.0), 20.0);
        assert_eq!(s.map(5.0), 160.0);
        // A degenerate domain maps to the middle instead of dividing by zero.
        assert_eq!(Scale::new((2.0, 2.0), (0.0, 100.0)).map(2.0), 50.0);
    }

    #[test]
    fn extent_pads_and_survives_degenerate_input() {
        assert_eq!(extent([1.0, 3.0], 0.5), (0.0, 4.0));
        assert_eq!(extent([2.0], 0.1), (1.5, 2.5));
        assert_eq!(extent([], 0.1), (-1.0, 1.0));
        assert_eq!(extent([f32::NAN, 1.0, 2.0], 0.0), (1.0, 2.0));
    }

    #[test]
    fn ticks_are_round_and_inside() {
        assert_eq!(ticks(0.0, 10.0, 5), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(ticks(-0.37, 0.42, 4), vec![-0.2, 0.0, 0.2, 0.4]);
        assert_eq!(ticks(1.0, 1.0, 4), Vec::<f32>::new());
        for t in ticks(-13.0, 57.0, 6) {
            assert!((-13.0..=57.0).contains(&t));
            assert_eq!(t % 10.0, 0.0, "{t}");
        }
    }

    #[test]
    fn tick_labels_carry_the_decimals_their_step_needs() {
        assert_eq!(tick_labels(&[-10.0, 0.0, 10.0]), ["-10", "0", "10"]);
        assert_eq!(
            tick_labels(&[-0.2, 0.0, 0.2, 0.4]),
            ["-0.2", "0.0", "0.2", "0.4"]
        );
        assert_eq!(tick_labels(&[0.05, 0.1]), ["0.05", "0.10"]);
        assert_eq!(tick_labels(&[3.0]), ["3"]);
    }

    #[test]
    fn colours_run_from_orange_through_grey_to_blue() {
        assert_eq!(projection_colour(0.0, 5.0), "rgb(150,150,150)");
        assert_eq!(projection_colour(5.0, 5.0), "rgb(33,102,172)");
        assert_eq!(projection_colour(-50.0, 5.0), "rgb(230,97,1)");
        assert_eq!(projection_colour(f32::NAN, 5.0), "rgb(150,150,150)");
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(fmt(123.456), "123");
        assert_eq!(fmt(-12.345), "-12.3");
        assert_eq!(fmt(1.2345), "1.23");
        assert_eq!(fmt(-0.0001), "0.000");
        assert_eq!(fmt(f32::NAN), "–");
        assert_eq!(megabytes(98_362_432), "98.4 MB");
    }
}
