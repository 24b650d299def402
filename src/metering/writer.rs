//! The thread that writes usage behind the request path: records as they settle and the
//! counters that changed, batched into one store transaction, so no response waits on a disk.
//! A flush waits (bounded) until everything sent before it is written; dropping the writer
//! writes what is left and joins the thread, so a restart loses nothing that settled.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::Counters;
use crate::state::usage::{UsageRecord, UsageStore};
use crate::state::QuotaRow;

/// How long a flush waits for the thread.
const FLUSH_WAIT: Duration = Duration::from_secs(5);
/// Records per transaction at most.
const BATCH: usize = 1024;

enum Message {
    Record(Box<UsageRecord>),
    Flush(mpsc::SyncSender<()>),
}

/// The sending side, and the thread to join.
#[derive(Debug)]
pub struct Writer {
    sender: Mutex<Option<Sender<Message>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Writer {
    /// Starts the thread over `store`, writing the dirty entries of `counters` with each batch.
    pub fn start(store: Arc<dyn UsageStore>, counters: Arc<Counters>) -> Writer {
        let (sender, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("authgate-usage".into())
            .spawn(move || run(&*store, &counters, &receiver))
            .map_err(|error| tracing::error!(%error, "usage writer thread not started"))
            .ok();
        Writer {
            sender: Mutex::new(Some(sender)),
            thread: Mutex::new(thread),
        }
    }

    /// Queues `record`.
    pub fn record(&self, record: UsageRecord) {
        self.send(Message::Record(Box::new(record)));
    }

    /// Waits until what was queued before is written.
    pub fn flush(&self) {
        let (done, wait) = mpsc::sync_channel(1);
        self.send(Message::Flush(done));
        if wait.recv_timeout(FLUSH_WAIT).is_err() {
            tracing::warn!("usage writer did not finish a flush within 5 s");
        }
    }

    fn send(&self, message: Message) {
        let sender = self.sender.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sender) = sender.as_ref() {
            let _ = sender.send(message);
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the channel lets the thread write what is left and end.
        self.sender.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = thread.join();
        }
    }
}

fn run(store: &dyn UsageStore, counters: &Counters, receiver: &Receiver<Message>) {
    // Old records and totals go at start and once a day after.
    let mut pruned_day = i64::MIN;
    while let Ok(first) = receiver.recv() {
        let mut records = Vec::new();
        let mut waiting = Vec::new();
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Record(record) => records.push(*record),
                Message::Flush(done) => waiting.push(done),
            }
            if records.len() < BATCH {
                next = receiver.try_recv().ok();
            }
        }
        write(store, counters, &records);
        let today = crate::state::usage::day_of(crate::auth::unix_now());
        if today != pruned_day {
            pruned_day = today;
            let outcome = store.prune(today - super::RECORD_DAYS, today - super::TOTALS_DAYS);
            if let Err(error) = outcome {
                tracing::warn!(%error, "old usage records not pruned");
            }
        }
        for done in waiting {
            let _ = done.send(());
        }
    }
}

fn write(store: &dyn UsageStore, counters: &Counters, records: &[UsageRecord]) {
    let dirty: Vec<QuotaRow> = {
        let mut counters = counters.lock().unwrap_or_else(|e| e.into_inner());
        counters
            .iter_mut()
            .filter(|(_, c)| c.dirty)
            .map(|((policy, consumer), counter)| {
                counter.dirty = false;
                QuotaRow {
                    policy: policy.clone(),
                    consumer: consumer.clone(),
                    window: counter.window,
                    used: counter.used,
                }
            })
            .collect()
    };
    if records.is_empty() && dirty.is_empty() {
        return;
    }
    if let Err(error) = store.write(records, &dirty) {
        tracing::error!(%error, records = records.len(), "usage not written");
        let mut counters = counters.lock().unwrap_or_else(|e| e.into_inner());
        for row in dirty {
            if let Some(counter) = counters.get_mut(&(row.policy, row.consumer)) {
                counter.dirty = true;
            }
        }
    }
}
