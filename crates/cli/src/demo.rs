//! `idlegrid demo`: a server and several engines on this machine run two real jobs through the
//! whole platform: a Mandelbrot image rendered tile by tile, and pi by Monte Carlo.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use idlegrid_protocol::messages::{Replay, TaskSpec};
use idlegrid_types::{ElementKind, JobProperties, TaskState};
use indicatif::MultiProgress;

use crate::cluster::{ClusterOptions, LocalCluster, read_task, tasks_dir};
use crate::jobs::{bar, follow};

const TILE: u32 = 64;

pub async fn run(
    engines: u32,
    tasks_dir_arg: Option<PathBuf>,
    out: &Path,
    pi_tasks: u64,
    width: u32,
) -> anyhow::Result<()> {
    anyhow::ensure!(engines >= 1, "--engines must be at least 1");
    anyhow::ensure!(
        (TILE..=16384).contains(&width) && width.is_multiple_of(TILE),
        "--width must be a multiple of {TILE} up to 16384"
    );
    let dir = tasks_dir(tasks_dir_arg, &["mandelbrot", "pi"])?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let height = (width * 3 / 4) / TILE * TILE;
    let cores = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1);
    let options = ClusterOptions::new(engines, (cores / engines).max(1), 8);
    println!("starting a server and {engines} compute engines on this machine ...");
    let cluster = LocalCluster::start(&options).await?;
    let client = cluster.client().await?;
    println!(
        "server at {}; engines {}",
        cluster.server.url(),
        cluster.engines.iter().map(|e| e.id()[..8].to_string()).collect::<Vec<_>>().join(", ")
    );

    let started = Instant::now();
    let mandelbrot = client.upload(read_task(&dir, "mandelbrot")?, ElementKind::Executable, "mandelbrot.wasm").await?;
    let pi = client.upload(read_task(&dir, "pi")?, ElementKind::Executable, "pi.wasm").await?;

    let (columns, rows) = (width / TILE, height / TILE);
    let image_job =
        client.create_job(JobProperties { name: "mandelbrot".into(), priority: 1, ..JobProperties::default() }).await?;
    let tiles = (0..rows * columns).map(|i| {
        let (x, y) = ((i % columns) * TILE, (i / columns) * TILE);
        TaskSpec {
            index: i as u64,
            executable: mandelbrot.hash,
            data: Default::default(),
            params: format!("x={x} y={y} w={TILE} h={TILE} width={width} height={height} iter=400").into_bytes(),
            priority: None,
        }
    });
    client.add_tasks(image_job.job, tiles).await?;
    let pi_job = client.create_job(JobProperties { name: "pi".into(), ..JobProperties::default() }).await?;
    let samples = 1_000_000u64;
    let pi_specs = (0..pi_tasks).map(|i| TaskSpec {
        index: i,
        executable: pi.hash,
        data: Default::default(),
        params: format!("samples={samples} seed={}", i + 1).into_bytes(),
        priority: None,
    });
    client.add_tasks(pi_job.job, pi_specs).await?;
    client.launch(image_job.job).await?;
    client.launch(pi_job.job).await?;
    println!("launched job {} ({} tiles) and job {} ({} tasks)", image_job.job, rows * columns, pi_job.job, pi_tasks);

    let bars = MultiProgress::new();
    let image_bar = bars.add(bar(Some((rows * columns) as u64), "mandelbrot"));
    let pi_bar = bars.add(bar(Some(pi_tasks), "pi"));
    let mut pixels = vec![0u8; (width * height) as usize];
    let (mut inside, mut total, mut failures) = (0u64, 0u64, Vec::new());
    let image_follow = follow(&client, image_job.job, Replay::Undelivered, &image_bar, |report, bytes| {
        match (report.state, bytes) {
            (TaskState::Succeeded, Some(bytes)) => paste_tile(&mut pixels, width, bytes)?,
            _ => failures.push(format!("tile {}: {:?}", report.task, report.failure)),
        }
        Ok(())
    });
    let mut pi_failures = Vec::new();
    let pi_follow = follow(&client, pi_job.job, Replay::Undelivered, &pi_bar, |report, bytes| {
        match (report.state, bytes) {
            (TaskState::Succeeded, Some(bytes)) => {
                let text = std::str::from_utf8(bytes).context("pi result is not text")?;
                let (i, t) = text.split_once(' ').context("pi result is not 'inside total'")?;
                inside += i.parse::<u64>()?;
                total += t.parse::<u64>()?;
            }
            _ => pi_failures.push(format!("pi task {}: {:?}", report.task, report.failure)),
        }
        Ok(())
    });
    let (image_info, pi_info) = tokio::try_join!(image_follow, pi_follow)?;
    let elapsed = started.elapsed();
    failures.extend(pi_failures);

    let png_path = out.join("mandelbrot.png");
    write_png(&png_path, width, height, &pixels)?;
    let estimate = if total > 0 { 4.0 * inside as f64 / total as f64 } else { f64::NAN };
    std::fs::write(
        out.join("pi.txt"),
        format!("{estimate:.8}\n{inside} of {total} points inside the quarter circle\n"),
    )?;

    println!();
    println!("done in {:.1} s", elapsed.as_secs_f64());
    println!("  mandelbrot: {} tiles -> {}", image_info.counts.succeeded, png_path.display());
    println!(
        "  pi ~= {estimate:.6} from {total} samples in {} tasks (error {:.2e}) -> {}",
        pi_info.counts.succeeded,
        (estimate - std::f64::consts::PI).abs(),
        out.join("pi.txt").display()
    );
    println!("  work per engine:");
    for engine in &cluster.engines {
        let stats = engine.stats();
        println!("    {}  {} tasks", &engine.id()[..8], stats.tasks_succeeded + stats.tasks_failed);
    }
    for failure in failures.iter().take(5) {
        println!("  failed: {failure}");
    }
    let _ = client.close().await;
    cluster.stop().await;
    anyhow::ensure!(failures.is_empty(), "{} tasks failed", failures.len());
    Ok(())
}

/// Copy a tile result (16-byte header x, y, w, h, then grey levels) into the image.
pub fn paste_tile(pixels: &mut [u8], width: u32, bytes: &[u8]) -> anyhow::Result<()> {
    anyhow::ensure!(bytes.len() >= 16, "tile result too short");
    let word = |i: usize| u32::from_le_bytes(bytes[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
    let (x, y, w, h) = (word(0), word(1), word(2), word(3));
    anyhow::ensure!(bytes.len() == 16 + (w * h) as usize, "tile result has the wrong size");
    let height = pixels.len() as u32 / width;
    anyhow::ensure!(x + w <= width && y + h <= height, "tile outside the image");
    for row in 0..h {
        let source = &bytes[16 + (row * w) as usize..16 + ((row + 1) * w) as usize];
        let start = ((y + row) * width + x) as usize;
        pixels[start..start + w as usize].copy_from_slice(source);
    }
    Ok(())
}

pub fn write_png(path: &Path, width: u32, height: u32, pixels: &[u8]) -> anyhow::Result<()> {
    let file = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), width, height);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(pixels)?;
    writer.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_land_where_their_header_says() {
        let mut pixels = vec![0u8; 8 * 4];
        let mut tile = Vec::new();
        for v in [4u32, 2, 2, 2] {
            tile.extend_from_slice(&v.to_le_bytes());
        }
        tile.extend_from_slice(&[1, 2, 3, 4]);
        paste_tile(&mut pixels, 8, &tile).unwrap();
        assert_eq!(&pixels[2 * 8 + 4..2 * 8 + 6], &[1, 2]);
        assert_eq!(&pixels[3 * 8 + 4..3 * 8 + 6], &[3, 4]);
        assert_eq!(pixels.iter().filter(|p| **p != 0).count(), 4);
        tile[0] = 7; // x = 7: the tile would stick out of the image
        assert!(paste_tile(&mut pixels, 8, &tile).is_err());
    }
}
