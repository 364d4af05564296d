//! Renders one tile of the Mandelbrot set.
//! Parameters: `x y w h` (tile position and size in pixels), `width height` (image size),
//! `iter` (maximum iterations), optional `cx cy scale` (centre and width of the view).
//! Result: 16-byte header (x, y, w, h as little-endian u32) then w*h grey levels, row by row.
//! Floating-point only in basic arithmetic and `ln`, computed the same way on every engine.

use idlegrid_guest::TaskError;

fn get<T: std::str::FromStr>(name: &str, default: Option<T>) -> Result<T, TaskError> {
    match idlegrid_guest::param(name) {
        Some(text) => text.parse().map_err(|_| TaskError::Failed(format!("parameter {name}={text} is invalid"))),
        None => default.ok_or_else(|| TaskError::Failed(format!("missing parameter {name}"))),
    }
}

fn main() {
    idlegrid_guest::run(|| {
        let (x0, y0): (u32, u32) = (get("x", None)?, get("y", None)?);
        let (w, h): (u32, u32) = (get("w", None)?, get("h", None)?);
        let (width, height): (u32, u32) = (get("width", None)?, get("height", None)?);
        let max_iter: u32 = get("iter", Some(256))?;
        let cx: f64 = get("cx", Some(-0.6))?;
        let cy: f64 = get("cy", Some(0.0))?;
        let scale: f64 = get("scale", Some(3.2))?;
        if w == 0 || h == 0 || w > 4096 || h > 4096 || width == 0 || height == 0 {
            return Err("tile and image sizes must be between 1 and 4096".into());
        }
        let mut out = Vec::with_capacity(16 + (w * h) as usize);
        for v in [x0, y0, w, h] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        let pixel = scale / width as f64;
        for py in y0..y0 + h {
            let ci = cy + (py as f64 - height as f64 / 2.0) * pixel;
            for px in x0..x0 + w {
                let cr = cx + (px as f64 - width as f64 / 2.0) * pixel;
                let (mut zr, mut zi, mut i) = (0.0f64, 0.0f64, 0u32);
                while i < max_iter && zr * zr + zi * zi <= 4.0 {
                    let t = zr * zr - zi * zi + cr;
                    zi = 2.0 * zr * zi + ci;
                    zr = t;
                    i += 1;
                }
                // Inside the set is black; outside, points that escape late (near the set's
                // edge) are bright, on a log scale so that the fine structure shows.
                let grey = if i == max_iter {
                    0
                } else {
                    (255.0 * ((i + 1) as f64).ln() / ((max_iter + 1) as f64).ln()) as u8
                };
                out.push(grey);
            }
        }
        Ok(out)
    });
}
