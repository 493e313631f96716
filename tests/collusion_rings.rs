//! Rings on AMLSim's laundering sample (`amlsim/20K_cycle200.tgz`: 20,000 accounts, 117,805
//! transfers over 149 daily steps, 200 injected cycles whose 945 members are labelled), the
//! transfers read as trades between accounts: [`PassThroughRings`] finds every ring the
//! transfers close, and nothing else.
//!
//! The labels name every account a cycle was planned over, whether or not its transfers ran:
//! AMLSim (the sample's generator, `CycleTransactionModel`) schedules each hop at a random step
//! of a 150-step period starting at a random step of the 150 simulated, and hops due after the
//! last step never run. So most cycles are left open in the file: 326 of the 945 labelled
//! accounts make no transfer of their cycle's amount at all, and 21 cycles (105 accounts) close.
//! `docs/detectors.md` ("Collusion rings") has the measurement and what stays out of reach.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use differential_dataflow::AsCollection;
use surveil_operators::{PassThroughChains, PassThroughRings, RingOptions};
use timely::dataflow::operators::ToStream;
use timely::dataflow::operators::capture::{Capture, Extract};

/// AMLSim's period: a cycle's hops fall within 150 steps of its start.
const WINDOW_STEPS: u64 = 150;

type Transfer = (u32, u32, u64);

/// The sample's labelled accounts and its transfers `((from, to, cents), step)`, extracted from
/// the archive into `dir`. Identical rows of one step are one transfer: the simulator replays a
/// cycle's hop once per member that acts in that step, which no trading system would record.
fn amlsim(dir: &Path) -> (BTreeSet<u32>, Vec<(Transfer, u64)>) {
    let archive = common::data("amlsim/20K_cycle200.tgz");
    let status =
        std::process::Command::new("tar").arg("xzf").arg(&archive).arg("-C").arg(dir).status().expect("tar runs");
    assert!(status.success(), "extracting {}", archive.display());
    let read = |name: &str| std::fs::read_to_string(dir.join("20K_cycle200").join(name)).expect("sample file");
    let labelled: BTreeSet<u32> = read("nodes.csv")
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split(',');
            let node = fields.next()?.parse().ok()?;
            (fields.next()? == "1").then_some(node)
        })
        .collect();
    let mut transfers: BTreeSet<(u64, Transfer)> = BTreeSet::new();
    let mut rows = 0;
    for line in read("transactions.csv").lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields.len(), 4, "{line}");
        let cents = (fields[2].parse::<f64>().expect("value") * 100.0).round() as u64;
        let transfer = (fields[0].parse().expect("source"), fields[1].parse().expect("target"), cents);
        transfers.insert((fields[3].parse().expect("step"), transfer));
        rows += 1;
    }
    assert_eq!((labelled.len(), rows), (945, 117_805));
    (labelled, transfers.into_iter().map(|(step, transfer)| (transfer, step)).collect())
}

/// The rings at the last step, on `workers` workers: each transfer enters at its step and
/// leaves the window `window` steps later.
fn rings(transfers: &[(Transfer, u64)], workers: usize, window: u64) -> BTreeMap<(u32, u64), u32> {
    groups(transfers, workers, window, Group::Rings)
}

/// Closed rings, or chains open or closed.
#[derive(Clone, Copy)]
enum Group {
    Rings,
    Chains,
}

/// The groups of `kind` at the last step, as [`rings`] gives the rings.
fn groups(transfers: &[(Transfer, u64)], workers: usize, window: u64, kind: Group) -> BTreeMap<(u32, u64), u32> {
    let last = transfers.iter().map(|t| t.1).max().expect("transfers");
    let transfers = Arc::new(transfers.to_vec());
    let captured = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&captured);
    timely::execute(timely::Config::process(workers), move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let mine: Vec<(Transfer, u64, isize)> = transfers
            .iter()
            .enumerate()
            .filter(|(i, _)| i % peers == index)
            .flat_map(|(_, &(transfer, step))| [(transfer, step, 1), (transfer, step + window, -1)])
            .collect();
        let rings = worker.dataflow::<u64, _, _>(|scope| {
            let transfers = mine.to_stream(scope).as_collection();
            match kind {
                Group::Rings => transfers.pass_through_rings(RingOptions::default()),
                Group::Chains => transfers.pass_through_chains(RingOptions::default()),
            }
            .inner
            .capture()
        });
        while worker.step_or_park(None) {}
        let updates: Vec<_> = rings.extract().into_iter().flat_map(|(_, data)| data).collect();
        sink.lock().expect("results").extend(updates);
    })
    .expect("timely runs");
    let mut count: BTreeMap<((u32, u64), u32), isize> = BTreeMap::new();
    for (data, time, diff) in captured.lock().expect("results").iter() {
        if *time <= last {
            *count.entry(*data).or_default() += diff;
        }
    }
    count.into_iter().filter(|(_, c)| *c != 0).map(|(d, _)| d).collect()
}

/// How many groups `found` holds, their accounts and how many of those are labelled; printed
/// with the precision and recall.
fn measured(what: &str, found: &BTreeMap<(u32, u64), u32>, labelled: &BTreeSet<u32>) -> (usize, BTreeSet<u32>, usize) {
    let members: BTreeSet<u32> = found.keys().map(|(account, _)| *account).collect();
    let groups: BTreeSet<(u32, u64)> = found.iter().map(|((_, amount), group)| (*group, *amount)).collect();
    let true_members = members.intersection(labelled).count();
    let precision = true_members as f64 / members.len().max(1) as f64;
    let recall = true_members as f64 / labelled.len() as f64;
    println!(
        "{what} {}, accounts {}, labelled among them {true_members}: precision {precision:.3}, recall {recall:.3} of the {} labelled",
        groups.len(),
        members.len(),
        labelled.len()
    );
    (groups.len(), members, true_members)
}

#[test]
fn every_ring_the_transfers_close_and_nothing_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (labelled, transfers) = amlsim(dir.path());
    let found = rings(&transfers, 1, WINDOW_STEPS);
    let (ring_count, members, true_members) = measured("rings", &found, &labelled);
    // The 21 cycles that closed, every member a labelled one.
    assert_eq!((ring_count, members.len(), true_members), (21, 105, 105));
    // Each ring is one amount passed round: its members sent and received it.
    for (account, amount) in found.keys() {
        assert!(transfers.iter().any(|((from, _, cents), _)| from == account && cents == amount));
        assert!(transfers.iter().any(|((_, to, cents), _)| to == account && cents == amount));
    }
    // The same rings on two workers.
    assert_eq!(rings(&transfers, 2, WINDOW_STEPS), found);
}

/// A window of 60 steps, sliding over the file: transfers leave while others come, and the
/// rings at the last step are those of the transfers still in the window, found at once.
#[test]
fn a_sliding_window_ends_where_its_last_transfers_alone_do() {
    const WINDOW: u64 = 60;
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, transfers) = amlsim(dir.path());
    let last = transfers.iter().map(|t| t.1).max().expect("transfers");
    let streamed = rings(&transfers, 2, WINDOW);
    let alive: Vec<(Transfer, u64)> = transfers.iter().copied().filter(|(_, step)| step + WINDOW > last).collect();
    assert!(alive.len() < transfers.len() / 2, "{} of {}", alive.len(), transfers.len());
    assert_eq!(streamed, rings(&alive, 1, WINDOW));
    // Rings closed within the last 60 steps: fewer than in the whole file, and among its rings.
    let whole = rings(&transfers, 1, WINDOW_STEPS);
    assert!(!streamed.is_empty() && streamed.len() < whole.len(), "{} of {}", streamed.len(), whole.len());
    assert!(streamed.keys().all(|member| whole.contains_key(member)), "{streamed:?}");
}

/// Open chains: the accounts handing a cycle's amount on along a path that has not closed yet.
/// Most of AMLSim's cycles are open in the file, so this is where the labelled accounts are.
#[test]
fn open_chains_find_the_cycles_left_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (labelled, transfers) = amlsim(dir.path());
    let found = groups(&transfers, 1, WINDOW_STEPS, Group::Chains);
    let (chains, members, true_members) = measured("chains", &found, &labelled);
    assert_eq!((chains, members.len(), true_members), (123, 503, 500));
    // Every ring's member is in a chain.
    let ring_members: BTreeSet<u32> = rings(&transfers, 1, WINDOW_STEPS).keys().map(|(a, _)| *a).collect();
    assert!(ring_members.is_subset(&members));
    // Each chain is one amount handed on: every member sent or received it, and some member
    // did both.
    for (account, amount) in found.keys() {
        assert!(transfers.iter().any(|((from, to, cents), _)| (from == account || to == account) && cents == amount));
    }
    // The same chains on two workers.
    assert_eq!(groups(&transfers, 2, WINDOW_STEPS, Group::Chains), found);
}
