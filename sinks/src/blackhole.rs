//! [`BlackholeSink`]: counts records and drops them.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use weir_dataflow::{Result, Sink, SubtaskInfo};

/// Counts the records it receives and drops them: the sink of benchmarks, which
/// measure the pipeline in front of it. All subtasks add to one shared counter,
/// once per batch.
pub struct BlackholeSink<T> {
    counter: Arc<AtomicU64>,
    _records: PhantomData<fn(T)>,
}

impl<T: Send + 'static> BlackholeSink<T> {
    /// A sink factory for [`weir_dataflow::Stream::sink`] and the counter of
    /// records received by all its subtasks (read it with `load`, any ordering).
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> (
        impl Fn(&SubtaskInfo) -> Self + Send + Sync + 'static,
        Arc<AtomicU64>,
    ) {
        let counter = Arc::new(AtomicU64::new(0));
        let handle = counter.clone();
        (
            move |_: &SubtaskInfo| Self {
                counter: counter.clone(),
                _records: PhantomData,
            },
            handle,
        )
    }
}

impl<T: Send + 'static> Sink for BlackholeSink<T> {
    type In = T;

    fn write_batch(&mut self, batch: &mut Vec<T>) -> Result<()> {
        self.counter
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        batch.clear();
        Ok(())
    }
}
