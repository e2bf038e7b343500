//! Rough runtime throughput probe (not a benchmark of record): a synthetic source
//! into a blackhole, and into a keyed tumbling-window count.
use std::time::{Duration, Instant};
use weir_dataflow::state::{Count, Max};
use weir_dataflow::window::WindowAssigner;
use weir_dataflow::{
    JobBuilder, JobConfig, Result, Sink, Source, SourceOutput, SourcePoll, Timestamp,
    WatermarkStrategy,
};

#[derive(Clone)]
struct Rec {
    key: i64,
    ts: i64,
    value: i64,
    _pad: [u64; 8],
}

struct Gen {
    next: i64,
    end: i64,
}

impl Source for Gen {
    type Out = Rec;
    fn poll(&mut self, out: &mut SourceOutput<Rec>) -> Result<SourcePoll> {
        let stop = (self.next + out.batch_size() as i64).min(self.end);
        for i in self.next..stop {
            out.push(Rec {
                key: (i.wrapping_mul(0x9E3779B97F4A7C15u64 as i64) >> 32).abs() % 10_000,
                ts: i / 10,
                value: i,
                _pad: [0; 8],
            });
        }
        self.next = stop;
        Ok(if stop >= self.end {
            SourcePoll::Finished
        } else {
            SourcePoll::Ready
        })
    }
}

struct Drop0;
impl Sink for Drop0 {
    type In = (i64, i64, u64, Option<i64>);
    fn write_batch(&mut self, batch: &mut Vec<Self::In>) -> Result<()> {
        batch.clear();
        Ok(())
    }
}
struct DropRec;
impl Sink for DropRec {
    type In = Rec;
    fn write_batch(&mut self, batch: &mut Vec<Rec>) -> Result<()> {
        batch.clear();
        Ok(())
    }
}

fn main() -> Result<()> {
    let n: i64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(50_000_000);
    let p = 2usize;
    let source = move |info: &weir_dataflow::SubtaskInfo| {
        let per = n / info.parallelism as i64;
        Gen {
            next: info.index as i64 * per,
            end: (info.index as i64 + 1) * per,
        }
    };
    let strategy = || {
        WatermarkStrategy::bounded_out_of_orderness(Duration::from_secs(4), |r: &Rec| {
            Timestamp(r.ts)
        })
    };
    let job = JobBuilder::new(JobConfig {
        parallelism: p,
        ..JobConfig::default()
    });
    job.source("gen", strategy(), source)
        .sink("drop", |_| DropRec);
    let t = Instant::now();
    job.execute()?;
    println!(
        "pass-through: {:.1} M/s",
        n as f64 / t.elapsed().as_secs_f64() / 1e6
    );

    let job = JobBuilder::new(JobConfig {
        parallelism: p,
        ..JobConfig::default()
    });
    job.source("gen", strategy(), source)
        .key_by(|r: &Rec| r.key)
        .window(WindowAssigner::tumbling(Duration::from_secs(10)))
        .aggregate((Count, Max(|r: &Rec| r.value)), |k, w, (c, m)| {
            (*k, w.start, c, m)
        })
        .sink("drop", |_| Drop0);
    let t = Instant::now();
    job.execute()?;
    println!(
        "keyed tumbling count/max: {:.1} M/s",
        n as f64 / t.elapsed().as_secs_f64() / 1e6
    );
    Ok(())
}
