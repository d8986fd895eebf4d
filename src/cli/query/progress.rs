//! The progress line of a long fetch, on stderr, only when stderr is a terminal.
//!
//! Hand-written rather than with `indicatif`: a fetch advances one page at a time
//! (a year of half-hours is two or three pages), so one line redrawn per page
//! (`\r`, the text, erase to the end of the line) says all there is, and the
//! command line keeps its dependency list. When stderr is not a terminal (a
//! pipe, a file, a test capturing it) nothing at all is written.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Where the fetch stands, redrawn after every page.
pub struct Progress {
    enabled: bool,
    started: Instant,
    /// Whether a line is on screen (to be erased before other output).
    shown: bool,
}

/// What one redraw shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// Pages received, over all parts.
    pub pages: u64,
    /// Records received, over all parts.
    pub records: u64,
    /// Records of the whole answer when known (one part, whose pages say it).
    pub total: Option<u64>,
    /// `(part, parts)`, 1-based, when the range was split.
    pub part: Option<(usize, usize)>,
}

impl Progress {
    /// Draws on stderr when it is a terminal.
    pub fn on_stderr() -> Self {
        Self::new(std::io::stderr().is_terminal())
    }

    /// Draws only when `enabled`.
    pub fn new(enabled: bool) -> Self {
        Progress {
            enabled,
            started: Instant::now(),
            shown: false,
        }
    }

    /// Redraws the line.
    pub fn update(&mut self, status: Status) {
        if !self.enabled {
            return;
        }
        let text = line(status, self.started.elapsed());
        let mut err = std::io::stderr().lock();
        // A progress line that cannot be drawn is not worth failing the fetch.
        let _ = write!(err, "\r{text}\x1b[K");
        let _ = err.flush();
        self.shown = true;
    }

    /// Erases the line, before other output on stderr and at the end.
    pub fn clear(&mut self) {
        if self.shown {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
            self.shown = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.clear();
    }
}

/// `part 2/5 · page 3 · 26,106/105,120 records [#####---------------] 25% · 4.2 s`
pub fn line(status: Status, elapsed: Duration) -> String {
    const WIDTH: u64 = 20;
    let mut text = String::new();
    if let Some((part, parts)) = status.part {
        text.push_str(&format!("part {part}/{parts} · "));
    }
    text.push_str(&format!(
        "page {} · {}",
        status.pages,
        grouped(status.records)
    ));
    match status.total {
        Some(total) if total > 0 => {
            let done = status.records.min(total);
            let filled = (done * WIDTH / total) as usize;
            text.push_str(&format!(
                "/{} records [{}{}] {}%",
                grouped(total),
                "#".repeat(filled),
                "-".repeat(WIDTH as usize - filled),
                done * 100 / total
            ));
        }
        _ => text.push_str(" records"),
    }
    text.push_str(&format!(" · {:.1} s", elapsed.as_secs_f64()));
    text
}

/// `105120` as `105,120`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_says_pages_records_total_and_elapsed_time() {
        let status = Status {
            pages: 3,
            records: 26_106,
            total: Some(105_120),
            part: None,
        };
        assert_eq!(
            line(status, Duration::from_millis(4_250)),
            "page 3 · 26,106/105,120 records [####----------------] 24% · 4.2 s"
        );
        let split = Status {
            pages: 7,
            records: 1_000_000,
            total: None,
            part: Some((2, 5)),
        };
        assert_eq!(
            line(split, Duration::from_secs(12)),
            "part 2/5 · page 7 · 1,000,000 records · 12.0 s"
        );
        let done = Status {
            pages: 1,
            records: 48,
            total: Some(48),
            part: None,
        };
        assert!(line(done, Duration::ZERO).contains("[####################] 100%"));
    }

    #[test]
    fn a_disabled_progress_writes_nothing() {
        // Nothing to observe on stderr here; at least it must not panic or draw.
        let mut p = Progress::new(false);
        p.update(Status {
            pages: 1,
            records: 1,
            total: None,
            part: None,
        });
        assert!(!p.shown);
    }
}
