//! Whole random files through the full `run`: random bytes, truncated valid files, mixtures of
//! good and bad lines, every format flag, plain and gzipped, one or two workers, small blocks.
//! Every run must terminate (a watchdog fails the case otherwise), never panic, and account for
//! every line it read exactly once: `read = header + blank + accepted + rejected`, every line
//! of a plain input is read, and every rejected line is a dead letter.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use proptest::prelude::*;
use surveil::config::Config;
use surveil::ingest::{Format, InputSpec};
use surveil::pipeline::{RunError, RunOptions, RunSummary, run};

const EXAMPLE_CSV: &str = include_str!("../datasets/example.csv");
const EXAMPLE_JSONL: &str = include_str!("../datasets/example.jsonl");
const LOBSTER: &[&str] = &[
    "34200.004241176,1,16113575,18,5853300,1",
    "34200.00426064,1,16113584,18,5853200,1",
    "34200.005,3,16113575,18,5853300,1",
    "34200.006,4,16113584,10,5853200,1",
    "34200.007,7,0,0,-1,-1",
];
const IMC: &[&str] = &[
    "timestamp;buyer;seller;symbol;currency;price;quantity",
    "0;Caesar;Paris;CROISSANTS;SEASHELLS;4265.0;8",
    "100;Charlie;Paris;RAINFOREST_RESIN;SEASHELLS;9999.0;1",
];

/// One piece of a generated file.
#[derive(Clone, Debug)]
enum Piece {
    Csv(usize),
    Jsonl(usize),
    Lobster(usize),
    Imc(usize),
    /// A good line cut after this many bytes.
    Cut(usize, usize),
    Random(Vec<u8>),
    Blank,
}

fn good_lines() -> Vec<String> {
    EXAMPLE_CSV
        .lines()
        .chain(EXAMPLE_JSONL.lines())
        .chain(LOBSTER.iter().copied())
        .chain(IMC.iter().copied())
        .map(String::from)
        .collect()
}

fn piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        4 => (0..27usize).prop_map(Piece::Csv),
        3 => (0..26usize).prop_map(Piece::Jsonl),
        2 => (0..LOBSTER.len()).prop_map(Piece::Lobster),
        2 => (0..IMC.len()).prop_map(Piece::Imc),
        2 => (0..60usize, 0..200usize).prop_map(|(line, cut)| Piece::Cut(line, cut)),
        2 => proptest::collection::vec(any::<u8>(), 0..120).prop_map(Piece::Random),
        1 => Just(Piece::Blank),
    ]
}

/// A generated input: its name, its bytes, whether to gzip it and where to cut the result.
#[derive(Clone, Debug)]
struct File {
    name: &'static str,
    pieces: Vec<Piece>,
    crlf: bool,
    gzip: bool,
    cut: Option<usize>,
    format: Option<Format>,
}

fn file() -> impl Strategy<Value = File> {
    let names = prop_oneof![
        Just("day.csv"),
        Just("day.jsonl"),
        Just("trades_round_1_day_2.csv"),
        Just("ACME_2024-03-01_34200000_57600000_message_1.csv"),
    ];
    let formats = prop_oneof![
        Just(None),
        Just(Some(Format::Csv)),
        Just(Some(Format::Jsonl)),
        Just(Some(Format::Lobster)),
        Just(Some(Format::Imc)),
    ];
    (
        names,
        proptest::collection::vec(piece(), 0..80),
        any::<bool>(),
        proptest::bool::weighted(0.2),
        proptest::option::weighted(0.2, 0..6000usize),
        formats,
    )
        .prop_map(|(name, pieces, crlf, gzip, cut, format)| File { name, pieces, crlf, gzip, cut, format })
}

impl File {
    /// The plain text, before any gzip or cut.
    fn text(&self) -> Vec<u8> {
        let good = good_lines();
        let end: &[u8] = if self.crlf { b"\r\n" } else { b"\n" };
        let mut bytes = Vec::new();
        // Most files start with the header their name suggests.
        if self.name.ends_with(".csv") && !self.name.contains("message") && !self.name.starts_with("trades") {
            bytes.extend_from_slice(EXAMPLE_CSV.lines().next().unwrap_or_default().as_bytes());
            bytes.extend_from_slice(end);
        }
        for piece in &self.pieces {
            match piece {
                Piece::Csv(i) => bytes.extend_from_slice(EXAMPLE_CSV.lines().nth(*i).unwrap_or_default().as_bytes()),
                Piece::Jsonl(i) => {
                    bytes.extend_from_slice(EXAMPLE_JSONL.lines().nth(*i).unwrap_or_default().as_bytes())
                }
                Piece::Lobster(i) => bytes.extend_from_slice(LOBSTER[*i].as_bytes()),
                Piece::Imc(i) => bytes.extend_from_slice(IMC[*i].as_bytes()),
                Piece::Cut(line, cut) => {
                    let line = &good[*line % good.len()];
                    bytes.extend_from_slice(&line.as_bytes()[..(*cut).min(line.len())]);
                }
                Piece::Random(random) => bytes.extend_from_slice(random),
                Piece::Blank => {}
            }
            bytes.extend_from_slice(end);
        }
        bytes
    }

    /// Writes the file; returns its path and the number of lines the reader must see in it
    /// (unknown for a gzip stream that was cut).
    fn write(&self, dir: &std::path::Path, index: usize) -> (PathBuf, Option<u64>) {
        let mut text = self.text();
        if !self.gzip
            && let Some(cut) = self.cut
        {
            text.truncate(cut.min(text.len()));
        }
        let lines = lines_in(&text);
        let mut bytes = text;
        let mut name = format!("{index}_{}", self.name);
        if self.gzip {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(&bytes).expect("compress");
            bytes = encoder.finish().expect("finish");
            name.push_str(".gz");
        }
        let cut_gzip = self.gzip && self.cut.is_some_and(|c| c < bytes.len());
        if let Some(cut) = self.cut.filter(|_| self.gzip) {
            bytes.truncate(cut.min(bytes.len()));
        }
        let path = dir.join(name);
        std::fs::write(&path, &bytes).expect("write");
        (path, (!cut_gzip).then_some(lines))
    }
}

fn lines_in(bytes: &[u8]) -> u64 {
    let ends = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
    ends + u64::from(bytes.last().is_some_and(|&b| b != b'\n'))
}

fn run_guarded(specs: Vec<InputSpec>, config: Config, workers: usize, out: PathBuf) -> Result<RunSummary, RunError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let what = format!("{specs:?} on {workers} workers");
    std::thread::spawn(move || {
        let _ = tx.send(run(RunOptions { workers, out_dir: out, ..RunOptions::new(specs, config) }));
    });
    match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(result) => result,
        Err(_) => panic!("{what}: did not terminate within 120 s"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn any_files_terminate_and_every_line_is_accounted_for(
        files in proptest::collection::vec(file(), 1..3),
        two_workers in any::<bool>(),
        small_blocks in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut specs = Vec::new();
        let mut expected = Some(0u64);
        for (i, file) in files.iter().enumerate() {
            let (path, lines) = file.write(dir.path(), i);
            expected = expected.zip(lines).map(|(a, b)| a + b);
            let format = file.format.unwrap_or_else(|| Format::detect(&path));
            specs.push(InputSpec { index: i as u32, path, format });
        }
        let mut config = Config::default();
        if small_blocks {
            config.ingest.block_size = 4096;
        }
        let workers = if two_workers { 2 } else { 1 };
        match run_guarded(specs.clone(), config, workers, dir.path().join("out")) {
            Ok(summary) => {
                let lines = summary.lines;
                prop_assert_eq!(lines.read, lines.header + lines.blank + lines.accepted + lines.rejected);
                if let Some(expected) = expected {
                    prop_assert_eq!(lines.read, expected, "every line is read once: {:?}", lines);
                }
                let letters = &summary.written.dead_letters_by_reason;
                let after_parse = letters.get("unknown_order").copied().unwrap_or(0)
                    + letters.get("io_error").copied().unwrap_or(0);
                prop_assert_eq!(summary.dead_letters, lines.rejected + after_parse, "{:?}", letters);
                prop_assert!(summary.complete);
            }
            // A header that does not fit its format is refused before the run starts; nothing
            // else may fail (a worker's panic would be a `Dataflow` error).
            Err(RunError::Input(surveil::ingest::InputError::Format { .. })) => {}
            Err(other) => prop_assert!(false, "{specs:?}: {other}"),
        }
    }
}
