//! The two astronomical quantities a lunisolar calendar needs: the instant of each new moon and
//! the apparent longitude of the sun.
//!
//! Both follow the series in Jean Meeus, *Astronomical Algorithms* (2nd ed.): the true new moon
//! is the mean new moon of lunation `k` plus the periodic terms of chapter 49 (about a minute of
//! error over 1900-2100), and the sun's apparent longitude is the low-accuracy theory of chapter
//! 25 (about 0.01 degree, a quarter of an hour of the sun's motion). The series are in
//! Terrestrial Time; ΔT (the Espenak-Meeus polynomials) brings them to Universal Time, which is
//! what a civil calendar divides into days.

use std::f64::consts::PI;

/// Julian day number of 2000-01-06, the day of lunation 0 in Meeus' numbering.
const LUNATION_0_JD: f64 = 2451550.09766;

/// Mean length of a synodic month in days.
pub const SYNODIC_MONTH: f64 = 29.530588861;

fn sin_deg(deg: f64) -> f64 {
    (deg * PI / 180.0).sin()
}

/// Terrestrial Time minus Universal Time, in seconds, for a decimal year (Espenak and Meeus'
/// polynomial fits, valid 1800-2150 and extrapolated parabolically outside).
pub fn delta_t_seconds(year: f64) -> f64 {
    let y = year;
    if (1800.0..1860.0).contains(&y) {
        let t = y - 1800.0;
        13.72 - 0.332447 * t + 0.0068612 * t.powi(2) + 0.0041116 * t.powi(3)
            - 0.00037436 * t.powi(4)
            + 0.0000121272 * t.powi(5)
            - 0.0000001699 * t.powi(6)
            + 0.000000000875 * t.powi(7)
    } else if (1860.0..1900.0).contains(&y) {
        let t = y - 1860.0;
        7.62 + 0.5737 * t - 0.251754 * t.powi(2) + 0.01680668 * t.powi(3) - 0.0004473624 * t.powi(4)
            + t.powi(5) / 233174.0
    } else if (1900.0..1920.0).contains(&y) {
        let t = y - 1900.0;
        -2.79 + 1.494119 * t - 0.0598939 * t.powi(2) + 0.0061966 * t.powi(3) - 0.000197 * t.powi(4)
    } else if (1920.0..1941.0).contains(&y) {
        let t = y - 1920.0;
        21.20 + 0.84493 * t - 0.076100 * t.powi(2) + 0.0020936 * t.powi(3)
    } else if (1941.0..1961.0).contains(&y) {
        let t = y - 1950.0;
        29.07 + 0.407 * t - t.powi(2) / 233.0 + t.powi(3) / 2547.0
    } else if (1961.0..1986.0).contains(&y) {
        let t = y - 1975.0;
        45.45 + 1.067 * t - t.powi(2) / 260.0 - t.powi(3) / 718.0
    } else if (1986.0..2005.0).contains(&y) {
        let t = y - 2000.0;
        63.86 + 0.3345 * t - 0.060374 * t.powi(2)
            + 0.0017275 * t.powi(3)
            + 0.000651814 * t.powi(4)
            + 0.00002373599 * t.powi(5)
    } else if (2005.0..2050.0).contains(&y) {
        let t = y - 2000.0;
        62.92 + 0.32217 * t + 0.005589 * t.powi(2)
    } else if (2050.0..2150.0).contains(&y) {
        let u = (y - 1820.0) / 100.0;
        -20.0 + 32.0 * u * u - 0.5628 * (2150.0 - y)
    } else {
        let u = (y - 1820.0) / 100.0;
        -20.0 + 32.0 * u * u
    }
}

/// Decimal year of a Julian date, precise enough for ΔT.
fn decimal_year(jd: f64) -> f64 {
    2000.0 + (jd - 2451544.5) / 365.2425
}

/// The instant of the true new moon of lunation `k` (0 = January 2000) as a Julian date in
/// Universal Time.
pub fn new_moon_ut(k: i64) -> f64 {
    let k = k as f64;
    let t = k / 1236.85;
    let (t2, t3, t4) = (t * t, t * t * t, t * t * t * t);

    // Mean new moon, then the mean anomalies, the argument of latitude and the node.
    let mean =
        LUNATION_0_JD + SYNODIC_MONTH * k + 0.00015437 * t2 - 0.000000150 * t3 + 0.00000000073 * t4;
    let e = 1.0 - 0.002516 * t - 0.0000074 * t2;
    let m = 2.5534 + 29.10535670 * k - 0.0000014 * t2 - 0.00000011 * t3;
    let mp = 201.5643 + 385.81693528 * k + 0.0107582 * t2 + 0.00001238 * t3 - 0.000000058 * t4;
    let f = 160.7108 + 390.67050284 * k - 0.0016118 * t2 - 0.00000227 * t3 + 0.000000011 * t4;
    let om = 124.7746 - 1.56375588 * k + 0.0020672 * t2 + 0.00000215 * t3;

    // Periodic terms of the new moon phase.
    let lunar = -0.40720 * sin_deg(mp)
        + 0.17241 * e * sin_deg(m)
        + 0.01608 * sin_deg(2.0 * mp)
        + 0.01039 * sin_deg(2.0 * f)
        + 0.00739 * e * sin_deg(mp - m)
        - 0.00514 * e * sin_deg(mp + m)
        + 0.00208 * e * e * sin_deg(2.0 * m)
        - 0.00111 * sin_deg(mp - 2.0 * f)
        - 0.00057 * sin_deg(mp + 2.0 * f)
        + 0.00056 * e * sin_deg(2.0 * mp + m)
        - 0.00042 * sin_deg(3.0 * mp)
        + 0.00042 * e * sin_deg(m + 2.0 * f)
        + 0.00038 * e * sin_deg(m - 2.0 * f)
        - 0.00024 * e * sin_deg(2.0 * mp - m)
        - 0.00017 * sin_deg(om)
        - 0.00007 * sin_deg(mp + 2.0 * m)
        + 0.00004 * sin_deg(2.0 * mp - 2.0 * f)
        + 0.00004 * sin_deg(3.0 * m)
        + 0.00003 * sin_deg(mp + m - 2.0 * f)
        + 0.00003 * sin_deg(2.0 * mp + 2.0 * f)
        - 0.00003 * sin_deg(mp + m + 2.0 * f)
        + 0.00003 * sin_deg(mp - m + 2.0 * f)
        - 0.00002 * sin_deg(mp - m - 2.0 * f)
        - 0.00002 * sin_deg(3.0 * mp + m)
        + 0.00002 * sin_deg(4.0 * mp);

    // Planetary perturbations: (coefficient, argument at k = 0, rate per lunation).
    const PLANETARY: [(f64, f64, f64); 13] = [
        (0.000165, 251.88, 0.016321),
        (0.000164, 251.83, 26.651886),
        (0.000126, 349.42, 36.412478),
        (0.000110, 84.66, 18.206239),
        (0.000062, 141.74, 53.303771),
        (0.000060, 207.14, 2.453732),
        (0.000056, 154.84, 7.306860),
        (0.000047, 34.52, 27.261239),
        (0.000042, 207.19, 0.121824),
        (0.000040, 291.34, 1.844379),
        (0.000037, 161.72, 24.198154),
        (0.000035, 239.56, 25.513099),
        (0.000023, 331.55, 3.592518),
    ];
    let planetary = 0.000325 * sin_deg(299.77 + 0.107408 * k - 0.009173 * t2)
        + PLANETARY
            .iter()
            .map(|&(c, a0, rate)| c * sin_deg(a0 + rate * k))
            .sum::<f64>();

    let jde = mean + lunar + planetary;
    jde - delta_t_seconds(decimal_year(jde)) / 86400.0
}

/// The apparent geocentric longitude of the sun in degrees, in [0, 360), at a Julian date in
/// Universal Time.
pub fn sun_longitude(jd_ut: f64) -> f64 {
    let jde = jd_ut + delta_t_seconds(decimal_year(jd_ut)) / 86400.0;
    let t = (jde - 2451545.0) / 36525.0;

    let l0 = 280.46646 + 36000.76983 * t + 0.0003032 * t * t;
    let m = 357.52911 + 35999.05029 * t - 0.0001537 * t * t;
    let center = (1.914602 - 0.004817 * t - 0.000014 * t * t) * sin_deg(m)
        + (0.019993 - 0.000101 * t) * sin_deg(2.0 * m)
        + 0.000289 * sin_deg(3.0 * m);

    // Nutation in longitude and aberration, to the apparent position.
    let omega = 125.04 - 1934.136 * t;
    let apparent = l0 + center - 0.00569 - 0.00478 * sin_deg(omega);

    apparent.rem_euclid(360.0)
}

/// The lunation number whose new moon is nearest to a Julian date.
pub fn lunation_near(jd: f64) -> i64 {
    ((jd - LUNATION_0_JD) / SYNODIC_MONTH).round() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_moon_of_january_2000_falls_on_the_sixth_at_18h_ut() {
        // Published instant: 2000-01-06 18:14 UT, i.e. JD 2451550.2597.
        let jd = new_moon_ut(0);

        assert!((jd - 2451550.2597).abs() < 2.0 / 1440.0, "got {jd}");
    }

    #[test]
    fn sun_reaches_270_degrees_at_the_december_2023_solstice() {
        // The solstice was 2023-12-22 03:27 UT (JD 2460300.644).
        let before = sun_longitude(2460300.644 - 0.02);
        let after = sun_longitude(2460300.644 + 0.02);

        assert!(before < 270.0 && after > 270.0, "{before} .. {after}");
    }

    #[test]
    fn delta_t_is_about_a_minute_around_2000() {
        let dt = delta_t_seconds(2000.0);

        assert!((60.0..70.0).contains(&dt), "{dt}");
    }
}
