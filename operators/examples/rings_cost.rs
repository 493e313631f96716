//! What a new transfer costs the ring search, against finding the rings from scratch.
//!
//! Reads AMLSim's cycle sample (the `.tgz` from the shared datasets, extracted with `tar`),
//! feeds its transfers step by step into [`PassThroughRings`] (each step one timely time, as
//! a live run would), and times each step's update; then builds the rings of the whole file
//! at once in a fresh dataflow, as a batch job rerun after every change would. With `chains`
//! after the archive, the same for [`PassThroughChains`] (open and closed paths).
//!
//! ```sh
//! cargo run --release -p surveil-operators --example rings_cost -- ../shared/datasets/amlsim/20K_cycle200.tgz
//! cargo run --release -p surveil-operators --example rings_cost -- ../shared/datasets/amlsim/20K_cycle200.tgz chains
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use differential_dataflow::VecCollection;
use differential_dataflow::input::Input;
use surveil_operators::{PassThroughChains, PassThroughRings, RingOptions};
use timely::dataflow::ProbeHandle;
use timely::dataflow::operators::Probe;

type Transfer = (u32, u32, u64);

/// The rings, or with `chains` the chains, of `transfers`.
fn search(
    transfers: VecCollection<'_, u64, Transfer, isize>,
    chains: bool,
) -> VecCollection<'_, u64, ((u32, u64), u32), isize> {
    if chains {
        transfers.pass_through_chains(RingOptions::default())
    } else {
        transfers.pass_through_rings(RingOptions::default())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let archive = std::env::args().nth(1).ok_or("usage: rings_cost AMLSIM_TGZ [chains]")?;
    let chains = match std::env::args().nth(2).as_deref() {
        None | Some("rings") => false,
        Some("chains") => true,
        Some(other) => return Err(format!("{other}: expected rings or chains").into()),
    };
    let dir = std::env::temp_dir().join(format!("rings_cost_{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let status = std::process::Command::new("tar").arg("xzf").arg(&archive).arg("-C").arg(&dir).status()?;
    if !status.success() {
        return Err(format!("cannot extract {archive}").into());
    }
    let text = std::fs::read_to_string(dir.join("20K_cycle200/transactions.csv"));
    std::fs::remove_dir_all(&dir)?;
    let text = text?;
    // Identical rows of one step are one transfer (the simulator repeats a hop per acting member).
    let mut by_step: BTreeMap<u64, BTreeSet<Transfer>> = BTreeMap::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 4 {
            return Err(format!("bad row: {line}").into());
        }
        let cents = (f[2].parse::<f64>()? * 100.0).round() as u64;
        by_step.entry(f[3].parse()?).or_default().insert((f[0].parse()?, f[1].parse()?, cents));
    }
    let total: usize = by_step.values().map(BTreeSet::len).sum();

    let steps = by_step.clone();
    let (per_step, streamed_rings) = timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let (mut input, rings) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, transfers) = scope.new_collection::<Transfer, isize>();
            let counted = std::rc::Rc::new(std::cell::RefCell::new(BTreeMap::<(u32, u64), isize>::new()));
            let sink = counted.clone();
            search(transfers, chains)
                .inspect(move |(((account, amount), _), _, diff)| {
                    *sink.borrow_mut().entry((*account, *amount)).or_default() += diff;
                })
                .inner
                .probe_with(&probe);
            (input, counted)
        });
        let mut per_step = Vec::new();
        for (step, transfers) in &steps {
            let started = Instant::now();
            input.advance_to(*step);
            for transfer in transfers {
                input.insert(*transfer);
            }
            input.advance_to(step + 1);
            input.flush();
            while probe.less_than(input.time()) {
                worker.step();
            }
            per_step.push((transfers.len(), started.elapsed()));
        }
        let members = rings.borrow().values().filter(|c| **c != 0).count();
        (per_step, members)
    });

    let all: Vec<Transfer> = by_step.values().flatten().copied().collect();
    let (batch, batch_rings) = timely::execute_directly(move |worker| {
        let started = Instant::now();
        let probe = ProbeHandle::new();
        let (mut input, count) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, transfers) = scope.new_collection::<Transfer, isize>();
            let count = std::rc::Rc::new(std::cell::Cell::new(0isize));
            let sink = count.clone();
            search(transfers, chains).inspect(move |(_, _, diff)| sink.set(sink.get() + diff)).inner.probe_with(&probe);
            (input, count)
        });
        for transfer in &all {
            input.insert(*transfer);
        }
        input.advance_to(1);
        input.flush();
        while probe.less_than(input.time()) {
            worker.step();
        }
        (started.elapsed(), count.get())
    });

    let streamed: Duration = per_step.iter().map(|s| s.1).sum();
    // The last quarter of the steps: the graph is nearly whole, as in a long-running job.
    let tail = &per_step[per_step.len() * 3 / 4..];
    let tail_time: Duration = tail.iter().map(|s| s.1).sum();
    let tail_transfers: usize = tail.iter().map(|s| s.0).sum();
    let per_transfer = tail_time.as_secs_f64() / tail_transfers.max(1) as f64;
    println!(
        "transfers {total} in {} steps; {} members: streamed {streamed_rings}, batch {batch_rings}",
        per_step.len(),
        if chains { "chain" } else { "ring" }
    );
    println!(
        "streamed: {:.3} s in all, {:.1} us per transfer",
        streamed.as_secs_f64(),
        1e6 * streamed.as_secs_f64() / total as f64
    );
    println!(
        "last quarter of the steps: {tail_transfers} transfers in {:.3} s, {:.1} us per transfer, {:.1} ms per step",
        tail_time.as_secs_f64(),
        1e6 * per_transfer,
        1e3 * tail_time.as_secs_f64() / tail.len().max(1) as f64
    );
    println!(
        "from scratch: {:.3} s for the whole file; one step's recomputation against its update: {:.0}x",
        batch.as_secs_f64(),
        batch.as_secs_f64() / (tail_time.as_secs_f64() / tail.len().max(1) as f64)
    );
    Ok(())
}
