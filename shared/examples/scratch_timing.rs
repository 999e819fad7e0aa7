use std::time::Instant;
use polars::prelude::*;
fn main() {
    let per = 3650usize; let n = 1000usize;
    let rows = per * n;
    let sid: Vec<u32> = (0..rows).map(|i| (i / per) as u32).collect();
    let dow: Vec<u32> = (0..rows).map(|i| ((i % per) % 7) as u32).collect();
    let vol: Vec<f64> = (0..rows).map(|i| ((i * 7919) % 1000) as f64).collect();
    let df = DataFrame::new(rows, vec![Column::new("sid".into(), sid), Column::new("dow".into(), dow), Column::new("volume".into(), vol.clone()), Column::new("category".into(), vol)]).unwrap();
    let window = |k: usize| RollingOptionsFixedWindow { window_size: k, min_periods: 1, ..Default::default() };
    let past_mean = |k: usize| col("volume").rolling_mean(window(k)).shift(lit(1)).fill_null(lit(0.0)).over([col("sid")]).unwrap();
    let past_sum = |name: &str| col(name).cum_sum(false).shift(lit(1)).fill_null(lit(0.0));
    let past_count = |name: &str| col(name).cum_count(false).shift(lit(1)).fill_null(lit(0)).cast(DataType::Float64);
    for variant in 0..3 {
        let t = Instant::now();
        let exprs = match variant {
            0 => vec![past_mean(7).alias("m7"), past_mean(30).alias("m30"), past_mean(3).alias("m3"), past_mean(14).alias("m14")],
            1 => vec![past_sum("volume").over([col("sid"), col("dow")]).unwrap().alias("ws"), past_count("volume").over([col("sid"), col("dow")]).unwrap().alias("wc")],
            _ => vec![past_sum("category").over([col("sid")]).unwrap().alias("cs"), past_count("category").over([col("sid")]).unwrap().alias("cc")],
        };
        let out = df.clone().lazy().select(exprs).collect().unwrap();
        println!("variant {variant}: {:?} ({} rows/s)", t.elapsed(), rows as f64 / t.elapsed().as_secs_f64());
        let _ = out;
    }
    // per-series query overhead
    let small = df.slice(0, per);
    let t = Instant::now();
    for _ in 0..100 {
        let _ = small.clone().lazy().select([col("volume").rolling_mean(window(7)).shift(lit(1)).fill_null(lit(0.0)).alias("m7")]).collect().unwrap();
    }
    println!("tiny query on 3650 rows: {:?}", t.elapsed() / 100);
    let t = Instant::now();
    for _ in 0..100 {
        let _ = small.clone().lazy().select([past_sum("volume").over([col("dow")]).unwrap().alias("ws")]).collect().unwrap();
    }
    println!("over dow query on 3650 rows: {:?}", t.elapsed() / 100);
}
