//! What an end-to-end test measured on its way (pod Ready, endpoints
//! programmed, first successful request), printed when the test ends — also
//! when it fails — so that regressions show in the test's output.

use std::fmt::Write;
use std::time::{Duration, Instant};

pub struct Timings {
    test: String,
    started: Instant,
    marks: Vec<(String, Duration)>,
}

impl Timings {
    pub fn start(test: &str) -> Timings {
        Timings {
            test: test.to_string(),
            started: Instant::now(),
            marks: Vec::new(),
        }
    }

    /// Records how long `what` took.
    pub fn record(&mut self, what: &str, took: Duration) -> Duration {
        self.marks.push((what.to_string(), took));
        took
    }

    /// Records the time from `since` to now as `what`.
    pub fn since(&mut self, what: &str, since: Instant) -> Duration {
        self.record(what, since.elapsed())
    }

    /// The report: one line per mark, then the total.
    pub fn report(&self) -> String {
        let width = self.marks.iter().map(|(w, _)| w.len()).max().unwrap_or(0);
        let mut out = format!("timings of {}:\n", self.test);
        for (what, took) in &self.marks {
            let _ = writeln!(out, "  {what:<width$}  {:>7.2} s", took.as_secs_f64());
        }
        let _ = writeln!(
            out,
            "  {:<width$}  {:>7.2} s",
            "whole test",
            self.started.elapsed().as_secs_f64()
        );
        out
    }
}

impl Drop for Timings {
    fn drop(&mut self) {
        println!("{}", self.report());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_lists_every_mark_and_the_total() {
        let mut t = Timings::start("a test");
        t.record("pod Ready", Duration::from_millis(1500));
        t.record("first curl", Duration::from_millis(20));
        let report = t.report();
        assert!(report.starts_with("timings of a test:\n"), "{report}");
        assert!(report.contains("  pod Ready      1.50 s\n"), "{report}");
        assert!(report.contains("  first curl     0.02 s\n"), "{report}");
        assert!(report.contains("whole test"), "{report}");
    }
}
