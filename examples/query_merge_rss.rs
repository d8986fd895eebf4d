//! Peak memory and time of `query`'s merged output on a long range, without an
//! XMPP server: a fake agent answers two years of a 10-minute meter (105,120
//! records) in 13 pages of at most 8,702 records, each page built only when
//! asked, and `fetch_data` writes one document to stdout.
//!
//! ```text
//! cargo run --example query_merge_rss -- [paged|whole] [xml|json|csv] > /dev/null
//! ```
//!
//! `paged` is what `query` does; `whole` decodes the same records received as
//! ONE answer (what `query` did before paging, and what it still does with an
//! agent that does not page), for comparison. Prints peak RSS (VmHWM of
//! /proc/self/status) and the elapsed time on stderr, and, when stderr is a
//! terminal, `query`'s progress line (`PAGE_DELAY_MS=300` slows the pages down
//! enough to watch it).

use std::io::Write;
use std::time::Instant;

use minidom::Element;
use quoalise_agent::cli::query::{
    DataQuery, Exchange, ExchangeError, Format, Merger, Progress, fetch_data,
};
use quoalise_agent::quoalise::{
    Identifier, MetaForm, Reading, Series, Step, TimeSeries, encode_element,
};
use quoalise_agent::xmpp::{Action, Actions, Command, NS_QUOALISE, Status};
use xmpp_parsers::stanza_error::StanzaError;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// 2025-01-01T00:00:00+01:00.
const START: i64 = 1_735_686_000;
const STEP: i64 = 600;
const RECORDS: u64 = 105_120;
const PAGE: u64 = 8_702;

fn identifier() -> Identifier {
    Identifier::new(
        "30001610071843".parse().expect("a PRM"),
        Series::ConsumptionPower,
    )
}

/// Records `[from, to[` of the synthetic series.
fn readings(from: u64, to: u64) -> Vec<Reading> {
    (from..to)
        .map(|i| Reading {
            start: START + i as i64 * STEP,
            step: Step::Minutes(10),
            value: Some(if i % 7 == 5 {
                (i % 3000) as f64 + 0.25
            } else {
                (i * 37 % 3000) as f64
            }),
        })
        .collect()
}

fn answer(status: Status, page: Option<(u64, u64)>, records: Vec<Reading>) -> Element {
    let mut command = Command::answer("get_history", Some("s1".to_owned()), status);
    if status == Status::Executing {
        command.actions = Some(Actions {
            execute: Some(Action::Next),
            next: true,
            ..Actions::default()
        });
    }
    if let Some((number, offset)) = page {
        let page = format!(
            r#"<page xmlns="{NS_QUOALISE}" number="{number}" offset="{offset}" records="{}" total="{RECORDS}"/>"#,
            records.len()
        );
        command
            .payloads
            .push(page.parse().expect("a valid <page/>"));
    }
    let series = TimeSeries::new(identifier(), records);
    command
        .payloads
        .push(encode_element(&series, MetaForm::Flat).expect("the payload encodes"));
    command.into_element()
}

/// Pages built on demand.
struct LazyAgent {
    next: u64,
    paged: bool,
    delay: std::time::Duration,
}

impl Exchange for LazyAgent {
    async fn send(&mut self, _request: Command) -> Result<Element, ExchangeError> {
        std::thread::sleep(self.delay);
        if !self.paged {
            return Ok(answer(Status::Completed, None, readings(0, RECORDS)));
        }
        let offset = self.next * PAGE;
        let end = (offset + PAGE).min(RECORDS);
        self.next += 1;
        let status = if end == RECORDS {
            Status::Completed
        } else {
            Status::Executing
        };
        Ok(answer(
            status,
            Some((self.next, offset)),
            readings(offset, end),
        ))
    }

    fn describe(&self, error: &StanzaError) -> String {
        format!("{error:?}")
    }
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let paged = args.first().is_none_or(|m| m != "whole");
    let format = match args.get(1).map(String::as_str) {
        Some("json") => Format::Json,
        Some("csv") => Format::Csv,
        _ => Format::Xml,
    };
    let before = peak_rss_kib();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let started = Instant::now();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    let delay = std::env::var("PAGE_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(std::time::Duration::ZERO, std::time::Duration::from_millis);
    let mut agent = LazyAgent {
        next: 0,
        paged,
        delay,
    };
    let query = DataQuery::History {
        identifier: identifier().to_string(),
        start: Some("2025-01-01T00:00:00+01:00".to_owned()),
        end: Some("2027-01-01T00:00:00+01:00".to_owned()),
    };
    let mut merger = Merger::new(format, &mut out);
    runtime
        .block_on(fetch_data(
            &mut agent,
            &query,
            &mut merger,
            &mut Progress::on_stderr(),
        ))
        .expect("the fetch succeeds");
    let (summary, _) = merger.finish().expect("the document closes");
    out.flush().expect("stdout");
    let elapsed = started.elapsed();
    eprintln!("{}", summary.unwrap_or_default());
    eprintln!(
        "mode {} format {format:?}: peak RSS {} KiB (at start {} KiB), {:.2} s",
        if paged { "paged" } else { "whole" },
        peak_rss_kib(),
        before,
        elapsed.as_secs_f64()
    );
}
